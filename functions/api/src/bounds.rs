//! The size bounds of requests, shared by the extractors, the body-limit layer and the error table.

/// Largest request body accepted (Azure's 96 KB message limit), on every route but a policy upload.
pub const MAX_BODY_BYTES: usize = 96 * 1024;
/// Largest body of `PUT /policies/{name}`: the policy host's module size limit (`dps_custom_allocation::Limits::module_bytes`,
/// 4 MiB; a test keeps the two equal). The only route with a larger limit than [`MAX_BODY_BYTES`].
pub const MAX_POLICY_BYTES: usize = 4 << 20;
/// Deepest JSON nesting accepted in a body.
pub const MAX_JSON_DEPTH: usize = 32;
