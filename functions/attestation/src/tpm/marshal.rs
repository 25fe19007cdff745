//! TPM 2.0 marshalling (big-endian, `TPM2B_*` = a `u16` size and that many bytes): a bounded reader for blobs
//! from the network and a writer for the structures the server builds.

use super::TpmError;

/// Reads TPM structures from untrusted bytes: every read is bounds-checked and fails with a named field.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], TpmError> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len()).ok_or(TpmError::Truncated(field))?;
        let got = &self.bytes[self.at..end];
        self.at = end;
        Ok(got)
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, TpmError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, TpmError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `TPM2B_*`: its size, then that many bytes, at most `max`.
    pub(crate) fn sized(&mut self, max: usize, field: &'static str) -> Result<&'a [u8], TpmError> {
        let size = usize::from(self.u16(field)?);
        if size > max {
            return Err(TpmError::TooLarge(field));
        }
        self.take(size, field)
    }

    /// Fail unless every byte was read.
    pub(crate) fn finish(&self, field: &'static str) -> Result<(), TpmError> {
        if self.at == self.bytes.len() { Ok(()) } else { Err(TpmError::TrailingBytes(field)) }
    }

    /// The bytes read so far.
    pub(crate) fn consumed(&self) -> &'a [u8] {
        &self.bytes[..self.at]
    }
}

/// Appends TPM structures to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(v);
        self
    }

    /// A `TPM2B_*` around `v`. Every structure the server builds is far below 64 KiB.
    pub(crate) fn sized(&mut self, v: &[u8]) -> &mut Self {
        let size = u16::try_from(v.len()).expect("TPM2B contents the server builds fit in a u16");
        self.u16(size).raw(v)
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// `v` as a `TPM2B_*`.
pub(crate) fn sized(v: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.sized(v);
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_what_is_not_there() {
        let mut r = Reader::new(&[0x00, 0x05, 1, 2]);
        assert_eq!(r.sized(64, "x"), Err(TpmError::Truncated("x")));
        let mut r = Reader::new(&[0x00, 0x05, 1, 2, 3, 4, 5]);
        assert_eq!(r.sized(4, "x"), Err(TpmError::TooLarge("x")));
        let mut r = Reader::new(&[0xff]);
        assert_eq!(r.u16("y"), Err(TpmError::Truncated("y")));
        let mut r = Reader::new(&[0, 1, 9, 7]);
        assert_eq!(r.sized(8, "z"), Ok(&[9u8][..]));
        assert_eq!(r.finish("z"), Err(TpmError::TrailingBytes("z")));
    }

    #[test]
    fn writer_marshals_big_endian() {
        let mut w = Writer::default();
        w.u16(0x0102).u32(0x03040506).sized(&[7, 8]);
        assert_eq!(w.into_bytes(), vec![1, 2, 3, 4, 5, 6, 0, 2, 7, 8]);
    }
}
