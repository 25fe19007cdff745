#!/usr/bin/env python3
"""Split a `perf record --call-graph dwarf` profile of `dps serve` by where the CPU went (docs/PERFORMANCE.md).

    perf script -i run.data -F comm,tid,ip,sym > run.txt
    scripts/perf/classify-stacks.py run.txt [US_PER_OP] [--tls]

Each sample is counted once: samples of the store's writer thread by what the writer was doing, the others by
the innermost frame (leaf first) that belongs to one of the parts below. With US_PER_OP (the server's CPU per
operation in the sampled run) each share is also shown in µs per operation; with --tls the TLS share is split
into its key exchange, signature, hashing and the rest.
"""

import collections
import re
import sys


def samples(path):
    """(thread name, frames leaf first) for each sample of `perf script -F comm,tid,ip,sym` output."""
    head, frames = None, []
    for line in open(path, errors="replace"):
        if not line.strip():
            if head:
                yield head, frames
            head, frames = None, []
        elif not line[0].isspace():
            head, frames = line.split()[0], []
        else:
            parts = line.strip().split(None, 1)
            frames.append(parts[1] if len(parts) > 1 else "")
    if head:
        yield head, frames


KERNEL = [
    (r"\b(tcp_|sock_|skb_|ip_finish|__sys_sendto|__sys_recvfrom|__x64_sys_(read|write|writev)|do_writev|__netif)",
     "sockets (kernel TCP send/receive)"),
    (r"\b(futex_|__schedule|schedule\b|try_to_wake_up|epoll_wait|do_epoll)",
     "scheduling, wake-ups (kernel: futex, epoll, task switches)"),
]
CRATES = [
    (r"rustls|ring_core|ring::", "TLS (rustls)"),
    (r"serde_json|serde::", "JSON (request, answer, record)"),
    (r"dps_store_embedded|fjall|lsm_tree", "store: reads and the hand-off to the writer"),
    (r"dps_core|dps_attestation|hmac|sha2::|base64", "the service (attestation, allocation, record)"),
    (r"dps_api::(device|extract|wire)", "the device handler"),
    (r"dps_api::|axum::|tower|dps::serve|dps::conn|tracing", "axum/tower layers, the server loop"),
    (r"hyper|httparse|http::", "hyper HTTP/1.1"),
    (r"tokio|mio::", "tokio runtime"),
]
WRITER = [
    (r"fdatasync|sync_data|ext4_sync|file_write_and_wait|blk_|virtio", "writer: fdatasync (ext4, virtio)"),
    (r"journal|Journal", "writer: journal append"),
    (r"memtable|Memtable|skiplist|SkipMap", "writer: memtable inserts"),
    (r"serde_json|dps_store_embedded::rows|to_json", "writer: rows (checks, JSON of the record)"),
    (r"futex|schedule|recv|mpsc", "writer: waiting, wake-ups"),
]
TLS = [
    (r"x25519|X25519|curve25519|25519", "TLS: X25519 (key generation, shared secret)"),
    (r"p256|nistz256|ecdsa|ECDSA", "TLS: ECDSA P-256 signature"),
    (r"sha256|sha512|sha2|Sha|digest|hkdf|hmac|Hkdf", "TLS: hashing, HKDF"),
    (r"ticket|Ticket|aead|gcm|aes|chacha", "TLS: record encryption, tickets"),
]


def first_match(rules, text, default):
    return next((name for pattern, name in rules if re.search(pattern, text)), default)


def worker(frames, split_tls):
    joined = " ".join(frames)
    part = first_match(KERNEL, joined, None)
    if part:
        return part
    for frame in frames:
        part = first_match(CRATES, frame, None)
        if part:
            if split_tls and part.startswith("TLS"):
                return first_match(TLS, joined, "TLS: the rest of rustls (state machine, messages, copies)")
            return part
    return "other"


def classify(comm, frames, split_tls):
    if comm.startswith("tokio"):
        return worker(frames, split_tls)
    if comm.startswith("dps-store"):
        return first_match(WRITER, " ".join(frames), "writer: rest (batch, overlay, commit bookkeeping)")
    return f"other threads ({comm})"


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    split_tls = "--tls" in argv
    us = float(args[1]) if len(args) > 1 else 0.0
    parts, threads, total = collections.Counter(), collections.Counter(), 0
    for comm, frames in samples(args[0]):
        total += 1
        threads[comm] += 1
        parts[classify(comm, frames, split_tls)] += 1
    print(f"{total} samples; by thread: {dict(threads)}")
    for part, n in parts.most_common():
        print(f"{100 * n / total:5.1f}%  {us * n / total:6.1f} µs  {part}")


if __name__ == "__main__":
    main(sys.argv)
