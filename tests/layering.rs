//! The one-way data flow of ARCHITECTURE.md, checked on the source: a lower layer that
//! imports a higher one (a clock helper from the engine, a constant from the service) makes
//! the map false, so this test fails on it and names the file and line.

use std::path::{Path, PathBuf};

/// The layers from the bottom up, each with its modules (a directory or a file under
/// `src/`). A module may import modules of its own layer and of the layers below, never of
/// one above. `errors` shares the store's layer: it maps the store's failures to gRPC
/// statuses, and the store keeps OAuth error codes on decision records.
const LAYERS: &[&[&str]] = &[
    &["vocab", "address", "metrics"],
    &["registration", "auth"],
    &["signals", "fingerprint", "step_up", "known_clients"],
    &["store", "errors"],
    &["policy", "cimd", "events", "notify", "export"],
    &["engine"],
    &["authoring"],
    &["config"],
    &["app"],
    &["service", "proto"],
    &["cli"],
];

/// The modules a module of layer `layer` must not name: every module above it.
fn above(layer: usize) -> Vec<&'static str> {
    LAYERS[layer + 1..]
        .iter()
        .flat_map(|modules| modules.iter().copied())
        .collect()
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every `crate::<module>` that `source` names outside comments and that `forbidden`
/// excludes (`*`: any module), as `(line number, module)`. A grouped import
/// (`crate::{a, b::C}`) names each of its modules, even across lines.
fn violations(source: &str, forbidden: &[&str]) -> Vec<(usize, String)> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let line_of = |offset: usize| code[..offset].matches('\n').count() + 1;
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::").map(|at| at + from) {
        from = at + "crate::".len();
        if code[..at].chars().last().is_some_and(is_word) {
            continue;
        }
        let after = &code[from..];
        let modules: Vec<String> = if let Some(group) = after.strip_prefix('{') {
            let mut items = vec![String::new()];
            let mut depth = 0;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(String::new()),
                    _ => {}
                }
                if let Some(item) = items.last_mut() {
                    item.push(c);
                }
            }
            items
                .iter()
                .map(|item| {
                    let item = item.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
                    item.chars().take_while(|&c| is_word(c)).collect()
                })
                .filter(|module: &String| !module.is_empty())
                .collect()
        } else {
            vec![after.chars().take_while(|&c| is_word(c)).collect()]
        };
        for module in modules {
            if forbidden.contains(&"*") || forbidden.contains(&module.as_str()) {
                found.push((line_of(at), module));
            }
        }
    }
    found
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    let mut checked = 0;
    for (layer, modules) in LAYERS.iter().enumerate() {
        let forbidden = above(layer);
        for module in *modules {
            let files: Vec<PathBuf> = [root.join(module), root.join(format!("{module}.rs"))]
                .iter()
                .flat_map(|path| rust_files(path))
                .collect();
            assert!(!files.is_empty(), "no source for module `{module}`");
            for file in files {
                checked += 1;
                let source = std::fs::read_to_string(&file).unwrap();
                for (line, imported) in violations(&source, &forbidden) {
                    broken.push(format!(
                        "{}:{line} imports `crate::{imported}`, a layer above `{module}`",
                        file.strip_prefix(&root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(checked >= 60, "only {checked} files were checked");
    assert!(
        broken.is_empty(),
        "the one-way data flow is broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_module_of_the_crate_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("pub mod ")?.strip_suffix(';'))
        .collect();
    assert!(declared.len() >= 15, "{declared:?}");
    for module in declared {
        assert!(
            LAYERS.iter().any(|layer| layer.contains(&module)),
            "`{module}` has no layer in tests/layering.rs"
        );
    }
}

#[test]
fn the_check_sees_imports_paths_and_grouped_uses_but_not_comments() {
    let source = "use crate::engine::millis;\n\
                  // crate::service is fine in a comment\n\
                  let t = crate::cli::run();\n\
                  use crate::{policy, store::Store};\n\
                  fn f() -> mycrate::engine::X {}\n";
    assert_eq!(
        violations(source, &["engine", "service", "cli"]),
        vec![(1, "engine".to_owned()), (3, "cli".to_owned())]
    );
    assert_eq!(
        violations("use crate::{policy, store::Store};", &["*"]),
        vec![(1, "policy".to_owned()), (1, "store".to_owned())]
    );
    assert_eq!(
        violations(
            "use crate::{\n    engine::{Engine, millis},\n    vocab::Decision,\n};",
            &["engine"]
        ),
        vec![(1, "engine".to_owned())]
    );
}
