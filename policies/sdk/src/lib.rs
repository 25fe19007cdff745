//! Guest SDK for custom allocation policies (see `../ABI.md`).
//!
//! A policy is one function from Azure's AllocationRequest to an AllocationResponse or a [`Rejection`]:
//!
//! ```ignore
//! use dps_policy_sdk::{AllocationRequest, AllocationResponse, Rejection};
//!
//! fn allocate(req: AllocationRequest) -> Result<AllocationResponse, Rejection> {
//!     let hub = req.linked_hubs.first().ok_or_else(|| Rejection::new("no linked hub"))?;
//!     Ok(AllocationResponse::to_hub(hub))
//! }
//!
//! dps_policy_sdk::policy!(allocate);
//! ```
//!
//! The SDK owns the module's exports (`dps_abi_version`, `dps_alloc`, `dps_allocate`), guest memory, JSON
//! decoding and encoding, and panics (a panic is logged through the host and ends the call with a trap). Its
//! global allocator (feature `heap`, on by default; `src/heap.rs`) serves the first 64 KiB of a call from the
//! module's initial memory, so a typical policy never grows its memory, which the host pays for.

#[cfg(all(target_arch = "wasm32", feature = "heap"))]
mod heap;

use serde::{Deserialize, Serialize};
pub use serde_json::{self, Map, Value, json};

/// Version of the host/guest contract this SDK implements (exported as `dps_abi_version`).
pub const ABI_VERSION: i32 = 1;

/// Azure's custom allocation request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationRequest {
    /// The individual enrollment that admitted the device (secrets stripped), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub individual_enrollment: Option<Value>,
    /// The enrollment group that admitted the device (secrets stripped), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group: Option<Value>,
    /// The device and its registration.
    pub device_runtime_context: DeviceRuntimeContext,
    /// Hubs the policy may choose from; the answer must be one of them.
    #[serde(default)]
    pub linked_hubs: Vec<String>,
}

/// What the service knows about the registering device.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRuntimeContext {
    /// The device's registration ID.
    pub registration_id: String,
    /// Hub of the current assignment (re-registrations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_iot_hub_host_name: Option<String>,
    /// Device ID of the current assignment (re-registrations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_device_id: Option<String>,
    /// The `payload` the device sent with its registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Attestation parts (`symmetricKey`, `x509`, `tpm`) and anything else, as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl AllocationRequest {
    /// The device's registration ID.
    pub fn registration_id(&self) -> &str {
        &self.device_runtime_context.registration_id
    }

    /// A field of the device's payload, if the device sent one.
    pub fn payload_field(&self, name: &str) -> Option<&Value> {
        self.device_runtime_context.payload.as_ref()?.get(name)
    }

    /// The enrollment (individual or group) that admitted the device.
    pub fn enrollment(&self) -> Option<&Value> {
        self.individual_enrollment.as_ref().or(self.enrollment_group.as_ref())
    }

    /// The linked hub equal to `host` (ignoring case), as the service spells it.
    pub fn linked_hub(&self, host: &str) -> Option<&str> {
        self.linked_hubs.iter().find(|h| h.eq_ignore_ascii_case(host)).map(String::as_str)
    }
}

/// Azure's custom allocation response.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AllocationResponse {
    /// The chosen hub: one of the request's `linkedHubs`.
    pub iot_hub_host_name: String,
    /// Initial twin (`tags`, `properties.desired`) applied instead of the enrollment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<Value>,
    /// Returned to the device as `registrationState.payload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

impl AllocationResponse {
    /// Assign the device to `hub`.
    pub fn to_hub(hub: impl Into<String>) -> Self {
        Self { iot_hub_host_name: hub.into(), ..Self::default() }
    }

    /// Set the initial twin's `tags`.
    pub fn with_tags(mut self, tags: Value) -> Self {
        self.twin()["tags"] = tags;
        self
    }

    /// Set the initial twin's `properties.desired`.
    pub fn with_desired(mut self, desired: Value) -> Self {
        self.twin()["properties"] = json!({ "desired": desired });
        self
    }

    /// Set the payload returned to the device.
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }

    fn twin(&mut self) -> &mut Value {
        self.initial_twin.get_or_insert_with(|| json!({}))
    }
}

/// A policy's refusal to assign the device: the registration fails with this message.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Rejection {
    /// Shown to the device (`registrationState.errorMessage`) and in the registration record.
    pub message: String,
}

impl Rejection {
    /// Refuse the device with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

/// Write a line to the host's log (bounded by the host; lines past the limit are dropped).
pub fn log(message: &str) {
    rt::log(message)
}

/// Export `$allocate` (a `fn(AllocationRequest) -> Result<AllocationResponse, Rejection>`) as the module's
/// entry point, with the ABI's other exports.
#[macro_export]
macro_rules! policy {
    ($allocate:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn dps_abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn dps_alloc(len: i32) -> i32 {
            $crate::rt::alloc(len)
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn dps_allocate(ptr: i32, len: i32) -> i64 {
            $crate::rt::allocate(ptr, len, $allocate)
        }
    };
}

/// The memory protocol behind [`policy!`]; not for direct use.
#[doc(hidden)]
pub mod rt {
    use super::{AllocationRequest, AllocationResponse, Rejection};
    use serde::Serialize;

    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "dps")]
    unsafe extern "C" {
        #[link_name = "log"]
        fn host_log(ptr: *const u8, len: usize);
    }

    /// Send a log line to the host.
    pub fn log(message: &str) {
        #[cfg(target_arch = "wasm32")]
        // SAFETY: the host reads `len` bytes at `ptr` from this module's memory and keeps no reference.
        unsafe {
            host_log(message.as_ptr(), message.len())
        };
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("policy log: {message}");
    }

    /// A buffer of `len` bytes the host writes the request into; owned by [`allocate`] afterwards.
    pub fn alloc(len: i32) -> i32 {
        let Ok(len) = usize::try_from(len) else { return 0 };
        let buffer = vec![0u8; len].into_boxed_slice();
        Box::into_raw(buffer) as *mut u8 as usize as i32
    }

    #[derive(Serialize)]
    struct Rejected<'a> {
        rejection: &'a Rejection,
    }

    /// Decode the request at `ptr`, run the policy, encode its answer; returns `(ptr << 32) | len` of the answer.
    pub fn allocate(ptr: i32, len: i32, policy: fn(AllocationRequest) -> Result<AllocationResponse, Rejection>) -> i64 {
        std::panic::set_hook(Box::new(|info| log(&format!("panic: {info}"))));
        let input: Box<[u8]> = match usize::try_from(len) {
            // SAFETY: the host wrote `len` bytes into the buffer `alloc(len)` returned, and hands it back once.
            Ok(len) if ptr != 0 => unsafe {
                Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr as usize as *mut u8, len))
            },
            _ => Box::new([]),
        };
        let output = match serde_json::from_slice::<AllocationRequest>(&input) {
            Ok(request) => match policy(request) {
                Ok(response) => serde_json::to_vec(&response),
                Err(rejection) => serde_json::to_vec(&Rejected { rejection: &rejection }),
            },
            Err(err) => {
                serde_json::to_vec(&Rejected { rejection: &Rejection::new(format!("invalid request: {err}")) })
            }
        };
        let output = output.unwrap_or_else(|_| br#"{"rejection":{"message":"could not encode the answer"}}"#.to_vec());
        let output = Box::leak(output.into_boxed_slice());
        ((output.as_ptr() as usize as i64) << 32) | output.len() as i64
    }
}
