//! Build script: makes GraphiQL's browser assets available to `src/http/graphiql.rs`.
//!
//! The assets come from npm (`assets/graphiql/package.json` + `package-lock.json`, both
//! committed); `node_modules` is not committed. When the installed packages are missing or do
//! not match the lockfile, this runs `npm ci` in `assets/graphiql`, then copies the few files
//! the page needs into `$OUT_DIR/graphiql/` under fixed names, where the server embeds them
//! with `include_bytes!`. It also sets `GRAPHIQL_ASSETS_HASH`, a hash of their contents, which
//! the server puts in the asset URLs so browsers may cache them forever.

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{self, Command, Stdio};

/// `(name in $OUT_DIR/graphiql, path under node_modules)`.
const ASSETS: &[(&str, &str)] = &[
    ("react.js", "react/umd/react.production.min.js"),
    ("react-dom.js", "react-dom/umd/react-dom.production.min.js"),
    ("graphiql.js", "graphiql/graphiql.min.js"),
    ("graphiql.css", "graphiql/graphiql.min.css"),
    ("graphql-ws.js", "graphql-ws/umd/graphql-ws.min.js"),
];

/// The npm packages the files above come from.
const PACKAGES: &[&str] = &["react", "react-dom", "graphiql", "graphql-ws"];

fn main() {
    if let Err(message) = run() {
        eprintln!("error: {message}");
        process::exit(1);
    }
}

fn run() -> Result<(), String> {
    println!("cargo:rerun-if-changed=assets/graphiql/package.json");
    println!("cargo:rerun-if-changed=assets/graphiql/package-lock.json");

    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .ok_or("CARGO_MANIFEST_DIR is not set")?;
    let out_dir = env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .ok_or("OUT_DIR is not set")?;
    let package_dir = manifest_dir.join("assets").join("graphiql");
    let node_modules = package_dir.join("node_modules");

    if needs_install(&package_dir, &node_modules) {
        npm_ci(&package_dir)?;
        if let Some((_, missing)) = ASSETS
            .iter()
            .find(|(_, source)| !node_modules.join(source).is_file())
        {
            return Err(format!(
                "`npm ci` succeeded in {} but node_modules/{missing} is missing; \
                 check the versions pinned in package.json",
                package_dir.display()
            ));
        }
    }

    let dest_dir = out_dir.join("graphiql");
    fs::create_dir_all(&dest_dir)
        .map_err(|e| format!("cannot create {}: {e}", dest_dir.display()))?;
    let mut hash = Fnv1a::new();
    for (name, source) in ASSETS {
        let source = node_modules.join(source);
        let bytes =
            fs::read(&source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
        hash.write(&bytes);
        let dest = dest_dir.join(name);
        fs::write(&dest, &bytes).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    }
    println!(
        "cargo:rustc-env=GRAPHIQL_ASSETS_HASH={:016x}",
        hash.finish()
    );
    Ok(())
}

/// Whether `npm ci` must run: a needed file is missing, or the installed packages (per npm's
/// own record, `node_modules/.package-lock.json`) differ from the versions in the lockfile.
fn needs_install(package_dir: &Path, node_modules: &Path) -> bool {
    if !ASSETS
        .iter()
        .all(|(_, source)| node_modules.join(source).is_file())
    {
        return true;
    }
    let (Ok(wanted), Ok(installed)) = (
        fs::read_to_string(package_dir.join("package-lock.json")),
        fs::read_to_string(node_modules.join(".package-lock.json")),
    ) else {
        return true;
    };
    PACKAGES.iter().any(|package| {
        match (
            locked_version(&wanted, package),
            locked_version(&installed, package),
        ) {
            (Some(wanted), Some(installed)) => wanted != installed,
            (Some(_), None) => true,
            // Not found in the lockfile (unexpected format): trust what is installed.
            (None, _) => false,
        }
    })
}

/// The version of `package` in an npm v2/v3 lockfile, as npm formats it:
/// `"node_modules/<package>": {` followed by `"version": "<version>"`.
fn locked_version<'a>(lock: &'a str, package: &str) -> Option<&'a str> {
    let key = format!("\"node_modules/{package}\": {{");
    let entry = &lock[lock.find(&key)? + key.len()..];
    let entry = &entry[..entry.find('}')?];
    let field = "\"version\": \"";
    let version = &entry[entry.find(field)? + field.len()..];
    Some(&version[..version.find('"')?])
}

fn npm_ci(package_dir: &Path) -> Result<(), String> {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let mut command = Command::new(npm);
    command
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(package_dir)
        // Cargo reads the build script's stdout for directives; keep npm's chatter on stderr.
        .stdout(Stdio::from(io::stderr()));
    let hint = format!(
        "GraphiQL's assets are installed with npm: install Node.js/npm, or run \
         `npm ci` in {} yourself, then build again",
        package_dir.display()
    );
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "`npm ci` failed ({status}) in {}; see its output above. {hint}",
            package_dir.display()
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(format!("`{npm}` was not found on PATH. {hint}"))
        }
        Err(e) => Err(format!("cannot run `{npm} ci`: {e}. {hint}")),
    }
}

/// 64-bit FNV-1a: a small, stable content hash for cache-busting asset URLs.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
