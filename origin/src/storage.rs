//! Storage confinement: every path the catalog reads, writes, deletes or
//! signs is checked against its table's (or view's) own location.
//!
//! Paths are compared as [`StoragePath`]s, never as raw text: the scheme is
//! one of the warehouse schemes (`s3`, with its aliases `s3a`/`s3n`, and
//! `file`), the bucket is compared exactly, empty segments (`a//b`) are
//! dropped as the storage layer drops them, and each segment is compared
//! percent-decoded. A path with a `.` or `..` segment, raw or encoded, an
//! encoded `/` or `\`, a backslash or a control character is not a path at
//! all: it is refused rather than resolved, because storage layers disagree
//! on what it names. Containment is by whole segments, so `…/t1` never
//! contains `…/t10`.
//!
//! [`Confinement`] is the set of paths one table may touch: inside its
//! location, outside any other live object's location nested in it. A
//! [`FileIO`] built by [`confined_file_io`] refuses every other path, so the
//! `iceberg` crate's own readers (scan planning, purge) cannot leave it either.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileIO, FileIOBuilder, FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage,
    StorageConfig, StorageFactory,
};
use serde::{Deserialize, Serialize};

/// The longest path Floe handles (paths are compared, and their parents
/// listed, on every check: their size must be bounded).
pub const MAX_PATH_BYTES: usize = 4096;

/// The deepest path Floe handles.
pub const MAX_SEGMENTS: usize = 128;

/// A storage location normalized for containment checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoragePath {
    /// `s3://<bucket>` or `file://`.
    root: String,
    /// Percent-decoded segments, none empty.
    segments: Vec<String>,
}

/// Why a text is not a storage path Floe will touch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(String);

fn invalid(reason: impl Into<String>) -> PathError {
    PathError(reason.into())
}

fn decode_segment(raw: &str) -> Result<String, PathError> {
    if raw == "." || raw == ".." {
        return Err(invalid("'.' and '..' segments are not allowed"));
    }
    if raw.contains('\\') {
        return Err(invalid("backslashes are not allowed"));
    }
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| invalid("a percent-encoded segment is not UTF-8"))?;
    if decoded == "." || decoded == ".." {
        return Err(invalid("encoded '.' and '..' segments are not allowed"));
    }
    if decoded.contains(['/', '\\']) {
        return Err(invalid("encoded '/' and '\\' are not allowed"));
    }
    if decoded.chars().any(char::is_control) {
        return Err(invalid("control characters are not allowed"));
    }
    Ok(decoded.into_owned())
}

impl StoragePath {
    /// Parses and normalizes `text` (see the module documentation).
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if text.len() > MAX_PATH_BYTES {
            return Err(invalid(format!("longer than {MAX_PATH_BYTES} bytes")));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("control characters are not allowed"));
        }
        if text.trim() != text {
            return Err(invalid("leading or trailing white space is not allowed"));
        }
        let (scheme, rest) = text
            .split_once(':')
            .ok_or_else(|| invalid("a location needs a scheme (s3:// or file://)"))?;
        let (root, path) = match scheme {
            "s3" | "s3a" | "s3n" => {
                let rest = rest
                    .strip_prefix("//")
                    .ok_or_else(|| invalid("an s3 location is s3://bucket/key"))?;
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                let valid_bucket = !bucket.is_empty()
                    && bucket.len() <= 255
                    && bucket
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
                if !valid_bucket {
                    return Err(invalid("not a valid bucket name"));
                }
                (format!("s3://{bucket}"), key)
            }
            // The storage layer strips `file:` and reads the rest as an
            // absolute path, authority included (`file://x/y` is `/x/y`).
            "file" => {
                if !rest.starts_with('/') {
                    return Err(invalid("a file location must be absolute: file:///path"));
                }
                ("file://".to_string(), rest)
            }
            _ => return Err(invalid("supported schemes are s3:// and file://")),
        };
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode_segment)
            .collect::<Result<Vec<_>, _>>()?;
        if segments.len() > MAX_SEGMENTS {
            return Err(invalid(format!("deeper than {MAX_SEGMENTS} segments")));
        }
        Ok(Self { root, segments })
    }

    /// A path from its [`StoragePath::key`] (as stored in the catalog
    /// database); `None` when `key` is not one.
    pub fn from_key(key: &str) -> Option<Self> {
        let (root, rest) = if let Some(rest) = key.strip_prefix("file:///") {
            ("file://".to_string(), rest)
        } else {
            let rest = key.strip_prefix("s3://")?;
            let (bucket, rest) = rest.split_once('/')?;
            (format!("s3://{bucket}"), rest)
        };
        let segments = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Some(Self { root, segments })
    }

    /// The canonical text with a trailing slash (`s3://b/a/b/`): one prefix
    /// of another exactly when one path contains the other.
    pub fn key(&self) -> String {
        let mut key = self.root.clone();
        key.push('/');
        for segment in &self.segments {
            key.push_str(segment);
            key.push('/');
        }
        key
    }

    /// The keys of this path and of every path that contains it.
    pub fn ancestor_keys(&self) -> Vec<String> {
        (0..=self.segments.len())
            .map(|n| {
                Self {
                    root: self.root.clone(),
                    segments: self.segments[..n].to_vec(),
                }
                .key()
            })
            .collect()
    }

    /// Whether `other` is this path or lies below it.
    pub fn contains(&self, other: &StoragePath) -> bool {
        self.root == other.root && other.segments.starts_with(&self.segments)
    }

    /// Whether one of the two contains the other.
    pub fn overlaps(&self, other: &StoragePath) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// Whether `other` lies strictly below this path.
    pub fn strictly_contains(&self, other: &StoragePath) -> bool {
        self.contains(other) && other.segments.len() > self.segments.len()
    }
}

impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.key();
        f.write_str(key.strip_suffix('/').unwrap_or(&key))
    }
}

/// The paths one table (or view) may touch: inside its location, when no
/// other live object's location overlaps it (only rows written before
/// locations were confined can overlap: then nothing may be touched, since
/// which files are whose is unknowable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// The object's location; `None` when nothing may be touched.
    root: Option<StoragePath>,
    /// For a local warehouse: its directory as named and as the file system
    /// resolves it, so that a symbolic link planted below it cannot lead a
    /// path elsewhere.
    anchor: Option<Anchor>,
}

/// A local warehouse directory, as named and with every link resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Anchor {
    named: PathBuf,
    real: PathBuf,
}

impl Confinement {
    /// The confinement of an object at `location`, given the locations of
    /// the other live objects that overlap it (any: nothing is allowed).
    pub fn new(location: &str, overlapping: &[StoragePath]) -> Self {
        let root = StoragePath::parse(location)
            .ok()
            .filter(|_| overlapping.is_empty());
        Self { root, anchor: None }
    }

    /// A confinement that allows no path.
    pub fn nothing() -> Self {
        Self {
            root: None,
            anchor: None,
        }
    }

    /// With the local warehouse directory `warehouse` (`file://…`) resolved,
    /// so every local path is also checked for links that leave it.
    pub fn anchored(mut self, warehouse: &str) -> Self {
        if let Some(named) = local_path(warehouse)
            && let Ok(real) = std::fs::canonicalize(&named)
        {
            self.anchor = Some(Anchor { named, real });
        }
        self
    }

    /// The object's normalized location, when anything may be touched.
    pub fn root(&self) -> Option<&StoragePath> {
        self.root.as_ref()
    }

    /// Whether `path` may be touched.
    pub fn allows(&self, path: &str) -> bool {
        let Some(root) = &self.root else {
            return false;
        };
        match StoragePath::parse(path) {
            Ok(parsed) => root.contains(&parsed) && self.no_link_leaves(path),
            Err(_) => false,
        }
    }

    /// For a local path below the anchor: no symbolic link on the way
    /// (between the warehouse directory and the path itself) leads anywhere
    /// but where the path names.
    fn no_link_leaves(&self, path: &str) -> bool {
        let (Some(anchor), Some(named)) = (&self.anchor, local_path(path)) else {
            return true;
        };
        let Ok(below) = named.strip_prefix(&anchor.named) else {
            return false;
        };
        if std::fs::symlink_metadata(&named).is_ok_and(|m| m.file_type().is_symlink()) {
            return false;
        }
        // The deepest directory on the way that exists must resolve to
        // exactly where it is named.
        let mut existing = named.parent();
        while let Some(dir) = existing {
            if !dir.starts_with(&anchor.named) {
                return true;
            }
            if let Ok(real) = std::fs::canonicalize(dir) {
                let relative = dir.strip_prefix(&anchor.named).unwrap_or(below);
                return real == anchor.real.join(relative);
            }
            existing = dir.parent();
        }
        true
    }

    fn check(&self, path: &str) -> iceberg::Result<()> {
        if self.allows(path) {
            Ok(())
        } else {
            Err(iceberg::Error::new(
                iceberg::ErrorKind::PreconditionFailed,
                format!("{OUTSIDE}: {path}"),
            ))
        }
    }
}

/// The local file a `file:` path names, as the storage layer resolves it
/// (everything after `file:`, empty segments dropped, nothing decoded).
fn local_path(path: &str) -> Option<PathBuf> {
    let rest = path.strip_prefix("file:")?;
    let mut local = PathBuf::from("/");
    local.extend(rest.split('/').filter(|s| !s.is_empty()));
    Some(local)
}

/// Whether `location` holds a character that an IAM policy reads as a
/// wildcard or a variable (`*`, `?`, `$`): vended credentials scoped to
/// such a location would reach other objects.
pub fn has_policy_wildcards(location: &str) -> bool {
    location.contains(['*', '?', '$'])
}

/// The message of the storage error a confined FileIO answers for a path
/// outside its confinement.
pub const OUTSIDE: &str = "path outside the table's location";

/// A FileIO over `props` that touches only what `confinement` allows.
pub fn confined_file_io(props: &HashMap<String, String>, confinement: Confinement) -> FileIO {
    let inner: Arc<dyn StorageFactory> =
        Arc::new(iceberg_storage_opendal::OpenDalResolvingStorageFactory::new());
    FileIOBuilder::new(Arc::new(ConfinedStorageFactory { inner, confinement }))
        .with_props(props.clone())
        .build()
}

/// Builds [`ConfinedStorage`] around the storage of another factory.
#[derive(Debug, Serialize, Deserialize)]
struct ConfinedStorageFactory {
    inner: Arc<dyn StorageFactory>,
    confinement: Confinement,
}

#[typetag::serde(name = "FloeConfinedStorageFactory")]
impl StorageFactory for ConfinedStorageFactory {
    fn build(&self, config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        Ok(Arc::new(ConfinedStorage {
            inner: self.inner.build(config)?,
            confinement: self.confinement.clone(),
        }))
    }
}

/// A storage that checks every path against a [`Confinement`] first.
#[derive(Debug, Serialize, Deserialize)]
struct ConfinedStorage {
    inner: Arc<dyn Storage>,
    confinement: Confinement,
}

#[async_trait]
#[typetag::serde(name = "FloeConfinedStorage")]
impl Storage for ConfinedStorage {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        self.confinement.check(path)?;
        self.inner.exists(path).await
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        self.confinement.check(path)?;
        self.inner.metadata(path).await
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        self.confinement.check(path)?;
        self.inner.read(path).await
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        self.confinement.check(path)?;
        self.inner.reader(path).await
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        self.confinement.check(path)?;
        self.inner.write(path, bs).await
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        self.confinement.check(path)?;
        self.inner.writer(path).await
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        self.confinement.check(path)?;
        self.inner.delete(path).await
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        self.confinement.check(path)?;
        self.inner.delete_prefix(path).await
    }

    async fn delete_stream(&self, paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        let paths: Vec<String> = paths.collect().await;
        for path in &paths {
            self.confinement.check(path)?;
        }
        self.inner
            .delete_stream(futures::stream::iter(paths).boxed())
            .await
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        self.confinement.check(path)?;
        self.inner.new_input(path)
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        self.confinement.check(path)?;
        self.inner.new_output(path)
    }
}

/// Why a warehouse location was refused (the text follows the setting's name).
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// Empty or blank.
    #[error("must not be empty")]
    Empty,
    /// `s3://` without a bucket.
    #[error("s3 location needs a bucket: s3://bucket/path")]
    NoBucket,
    /// `file://` with a relative path.
    #[error("file location must be absolute: file:///path")]
    RelativeFile,
    /// A scheme other than `file://` and `s3://`.
    #[error("supported schemes are file:// and s3://")]
    UnsupportedScheme,
    /// A relative path, and the working directory to resolve it against is unknown.
    #[error("{0}")]
    WorkingDirectory(#[source] std::io::Error),
    /// A `..` segment.
    #[error("must not contain '..'")]
    ParentSegment,
    /// The storage root itself (`s3://`, `file:///`).
    #[error("must name a directory below the storage root")]
    StorageRoot,
}

/// Normalizes a warehouse location: `s3://bucket/path` stays, `file:///abs`
/// stays, a plain path (relative or absolute) becomes `file:///abs/path`.
/// Trailing slashes are removed.
pub fn normalize_location(location: &str) -> std::result::Result<String, LocationError> {
    let location = location.trim();
    if location.is_empty() {
        return Err(LocationError::Empty);
    }
    let normalized = if let Some(rest) = location.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or_default();
        if bucket.is_empty() {
            return Err(LocationError::NoBucket);
        }
        location.to_string()
    } else if let Some(path) = location.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(LocationError::RelativeFile);
        }
        location.to_string()
    } else if location.contains("://") {
        return Err(LocationError::UnsupportedScheme);
    } else {
        let path = std::path::Path::new(location);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(LocationError::WorkingDirectory)?
                .join(path)
        };
        format!("file://{}", absolute.display())
    };
    if normalized.split('/').any(|seg| seg == "..") {
        return Err(LocationError::ParentSegment);
    }
    let trimmed = normalized.trim_end_matches('/');
    if trimmed.ends_with(':') || trimmed == "file://" {
        return Err(LocationError::StorageRoot);
    }
    Ok(trimmed.to_string())
}

/// Creates the directory of a `file://` warehouse so the first write succeeds.
pub fn ensure_local_root(location: &str) -> std::io::Result<()> {
    if let Some(path) = location.strip_prefix("file://") {
        std::fs::create_dir_all(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> StoragePath {
        StoragePath::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn paths_normalize() {
        assert_eq!(p("s3://b/wh//ns/t/").key(), "s3://b/wh/ns/t/");
        assert_eq!(p("s3a://b/wh/ns").key(), "s3://b/wh/ns/");
        assert_eq!(p("s3://b").key(), "s3://b/");
        assert_eq!(p("file:///tmp/w").key(), "file:///tmp/w/");
        assert_eq!(p("file:/tmp/w").key(), "file:///tmp/w/");
        assert_eq!(p("file://tmp/w").key(), "file:///tmp/w/");
        assert_eq!(p("s3://b/a%20b/c").key(), "s3://b/a b/c/");
        assert_eq!(p("s3://b/wh/t").to_string(), "s3://b/wh/t");
        for text in ["s3://b/a%2525b/c", "file:///x/y", "s3://b"] {
            let path = p(text);
            assert_eq!(StoragePath::from_key(&path.key()), Some(path));
        }
        assert_eq!(StoragePath::from_key("invalid:x"), None);
        assert_eq!(
            p("s3://b/a/b").ancestor_keys(),
            vec!["s3://b/", "s3://b/a/", "s3://b/a/b/"]
        );
    }

    #[test]
    fn tricks_are_not_paths() {
        for bad in [
            "s3://b/wh/t/../u",
            "s3://b/wh/t/./x",
            "s3://b/wh/t/%2e%2e/u",
            "s3://b/wh/t/%2E%2E/u",
            "s3://b/wh/t/.%2e/u",
            "s3://b/wh/t%2f..%2fu",
            "s3://b/wh/t/a%5cb",
            "s3://b/wh/t/a\\b",
            "s3://b/wh/t/a%00b",
            "s3://b/wh/t/\n",
            " s3://b/wh/t",
            "s3://user@b/wh",
            "s3://b:9000/wh",
            "s3://",
            "s3:/b/wh",
            "S3://b/wh",
            "gs://b/wh",
            "memory:///x",
            "/tmp/x",
            "tmp/x",
            "file:tmp/x",
            "file:///tmp/%ff",
        ] {
            assert!(StoragePath::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn containment_is_by_whole_segments() {
        let t1 = p("s3://b/wh/ns/t1");
        assert!(t1.contains(&p("s3://b/wh/ns/t1/data/f.parquet")));
        assert!(t1.contains(&p("s3a://b/wh//ns/t1/")));
        assert!(t1.contains(&p("s3://b/wh/ns/%74%31/x")));
        assert!(!t1.contains(&p("s3://b/wh/ns/t10/x")));
        assert!(!t1.contains(&p("s3://b/wh/ns/t")));
        assert!(!t1.contains(&p("s3://c/wh/ns/t1/x")));
        assert!(!t1.contains(&p("file:///wh/ns/t1/x")));
        assert!(t1.strictly_contains(&p("s3://b/wh/ns/t1/x")));
        assert!(!t1.strictly_contains(&p("s3://b/wh/ns/t1")));
        assert!(t1.overlaps(&p("s3://b/wh")));
        assert!(!t1.overlaps(&p("s3://b/wh/ns/t2")));
    }

    #[test]
    fn confinement_allows_the_location_alone_and_nothing_when_shared() {
        let c = Confinement::new("s3://b/wh/t", &[]);
        assert!(c.allows("s3://b/wh/t/data/x"));
        assert!(!c.allows("s3://b/wh/other/x"));
        assert!(!c.allows("s3://b/wh/t/../other/x"));
        assert!(!c.allows("s3://b/wh/t0/x"));
        let shared = Confinement::new("s3://b/wh", &[p("s3://b/wh/inner")]);
        assert!(shared.root().is_none());
        assert!(!shared.allows("s3://b/wh/data/x"));
        assert!(!Confinement::new("not a path", &[]).allows("not a path"));
    }

    #[test]
    fn paths_are_bounded() {
        let long = format!("s3://b/{}", "a".repeat(MAX_PATH_BYTES));
        assert!(StoragePath::parse(&long).is_err());
        let deep = format!("s3://b/{}", "a/".repeat(MAX_SEGMENTS + 1));
        assert!(StoragePath::parse(&deep).is_err());
        let fine = format!("s3://b/{}", "a/".repeat(MAX_SEGMENTS));
        assert!(StoragePath::parse(&fine).is_ok());
        assert!(has_policy_wildcards("s3://b/wh/mine/*"));
        assert!(has_policy_wildcards("s3://b/wh/${aws:username}"));
        assert!(!has_policy_wildcards("s3://b/wh/mine/t-1"));
    }

    /// A link planted below a local warehouse (clients write there directly)
    /// never leads a confined path out of it.
    #[tokio::test]
    async fn links_never_lead_out_of_a_local_warehouse() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = dir.path().join("wh");
        let table = warehouse.join("t");
        std::fs::create_dir_all(table.join("data")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, table.join("data").join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), table.join("data").join("file"))
            .unwrap();
        std::fs::write(table.join("data").join("own"), b"mine").unwrap();
        let root = url(&table);
        let c = Confinement::new(&root, &[]).anchored(&url(&warehouse));
        assert!(c.allows(&format!("{root}/data/own")));
        assert!(c.allows(&format!("{root}/metadata/new.json")));
        assert!(!c.allows(&format!("{root}/data/link/victim")));
        assert!(!c.allows(&format!("{root}/data/file")));
        assert!(!c.allows(&format!("{root}/data/link/new/deeper")));
        let io = confined_file_io(&HashMap::new(), c);
        assert!(io.delete(format!("{root}/data/link/victim")).await.is_err());
        assert!(io.new_input(format!("{root}/data/file")).is_err());
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"secret");
        io.delete(format!("{root}/data/own")).await.unwrap();
        // A warehouse reached through a link of its own is fine.
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(&warehouse, &alias).unwrap();
        let aliased = format!("{}/t", url(&alias));
        let c = Confinement::new(&aliased, &[]).anchored(&url(&alias));
        assert!(c.allows(&format!("{aliased}/metadata/x.json")));
        assert!(!c.allows(&format!("{aliased}/data/link/victim")));
    }

    fn url(path: &std::path::Path) -> String {
        format!("file://{}", path.display())
    }

    #[tokio::test]
    async fn a_confined_file_io_refuses_every_outside_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = format!("file://{}", dir.path().join("t").display());
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"secret").unwrap();
        let io = confined_file_io(&HashMap::new(), Confinement::new(&root, &[]));
        io.new_output(format!("{root}/data/a"))
            .unwrap()
            .write(Bytes::from_static(b"ok"))
            .await
            .unwrap();
        let outside = format!("file://{}", victim.display());
        let sneaky = format!("{root}/../victim");
        for path in [&outside, &sneaky] {
            assert!(io.new_input(path).is_err(), "{path}");
            assert!(io.delete(path).await.is_err(), "{path}");
            assert!(io.exists(path).await.is_err(), "{path}");
        }
        let many = futures::stream::iter(vec![format!("{root}/data/a"), outside.clone()]);
        assert!(io.delete_stream(many).await.is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"secret");
        assert!(io.exists(format!("{root}/data/a")).await.unwrap());
    }

    #[test]
    fn locations_normalize() {
        assert_eq!(normalize_location("s3://b/p/").unwrap(), "s3://b/p");
        assert_eq!(
            normalize_location("file:///tmp/w/").unwrap(),
            "file:///tmp/w"
        );
        assert_eq!(normalize_location("/tmp/w").unwrap(), "file:///tmp/w");
        assert!(normalize_location("rel").unwrap().starts_with("file:///"));
        for (location, refused) in [
            ("", "must not be empty"),
            ("s3://", "s3 location needs a bucket: s3://bucket/path"),
            ("gs://b", "supported schemes are file:// and s3://"),
            (
                "file://relative",
                "file location must be absolute: file:///path",
            ),
            ("/tmp/../etc", "must not contain '..'"),
            ("file:///", "must name a directory below the storage root"),
        ] {
            let error = normalize_location(location).expect_err(location);
            assert_eq!(error.to_string(), refused, "{location:?}");
        }
        assert!(matches!(
            normalize_location("s3://"),
            Err(LocationError::NoBucket)
        ));
    }
}
