//! `check_shape` on arbitrary UTF-8: no panic; an accepted statement has three
//! dot-separated parts, a non-empty signature, an `alg` other than `none`, and a non-empty
//! `iss`.
#![no_main]

use clientgate::registration::software_statement::check_shape;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(statement) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(shape) = check_shape(statement) {
        let parts: Vec<&str> = statement.split('.').collect();
        assert_eq!(parts.len(), 3, "accepted {statement:?}");
        assert!(!parts[2].is_empty(), "accepted an empty signature");
        assert!(!shape.algorithm.eq_ignore_ascii_case("none"));
        assert!(!shape.issuer.is_empty());
    }
});
