//! The generated `clientgate.v1` protobuf types and gRPC services.

#![allow(clippy::all, missing_docs)]

pub mod codec;

tonic::include_proto!("clientgate.v1");

/// The encoded descriptor set that server reflection serves.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("clientgate_descriptor");
