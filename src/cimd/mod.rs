//! Client ID Metadata Documents: the client_id URL rules, special-use addresses, document
//! validation and redirect matching (pure), and the SSRF-safe fetcher with its cache (I/O).

pub mod cache;
pub mod changes;
pub mod client_id;
pub mod document;
pub mod fetch;
pub mod redirect_match;
pub mod source;

#[cfg(test)]
mod tests;
