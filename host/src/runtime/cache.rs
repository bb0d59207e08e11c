//! The compiled-component cache (docs/architecture.md, "Compiled
//! components"): wasmtime's precompiled form of a component, kept under the
//! user's cache directory, so a run starts in milliseconds instead of
//! compiling the component again.
//!
//! An entry is keyed by the component's SHA-256 and the engine's
//! configuration (wasmtime's compatibility hash, which covers its version and
//! settings), and carries an HMAC-SHA256 tag under a key that only this user
//! can read (`<cache>/key`, 0600, in a 0700 directory this user owns). Only
//! entries with a valid tag are ever deserialised: a corrupt or foreign file
//! is compiled again and replaced, never trusted.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"syncwc01";
const TAG_LEN: usize = 32;

/// A cache directory this host trusts.
pub struct ComponentCache {
    dir: PathBuf,
    key: [u8; 32],
}

/// How a component was had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// Deserialised from a valid entry.
    Cached,
    /// Compiled (no entry, or one that was refused), and the entry written.
    Compiled,
}

/// `$XDG_CACHE_HOME/sync-host`, else `~/.cache/sync-host`.
pub fn default_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(base.join("sync-host"))
}

/// Feeds a `Hash` into SHA-256, for a digest that does not change between runs.
struct HashInto<'h>(&'h mut Sha256);

impl std::hash::Hasher for HashInto<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

impl ComponentCache {
    /// Opens (creating) `dir`. Refuses a directory another user owns or can
    /// write to: its entries could not be trusted.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        create_private_dir(dir)?;
        check_private(dir, true, 0o022)?;
        let key_path = dir.join("key");
        let key = match std::fs::read(&key_path) {
            Ok(bytes) => {
                // The key: readable by nobody else either, or others could tag entries.
                check_private(&key_path, false, 0o077)?;
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| anyhow::anyhow!("{} is not a cache key; remove it", key_path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                // `create_new`: of two processes creating it at once, one
                // writes it and the other reads it back.
                match write_private(&key_path, &key, true) {
                    Ok(()) => key,
                    Err(_) => <[u8; 32]>::try_from(std::fs::read(&key_path)?.as_slice())
                        .map_err(|_| anyhow::anyhow!("{} is not a cache key; remove it", key_path.display()))?,
                }
            }
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", key_path.display())),
        };
        Ok(ComponentCache { dir: dir.to_owned(), key })
    }

    fn entry(&self, engine: &Engine, component_sha256: &[u8]) -> (PathBuf, Vec<u8>) {
        let mut engine_digest = Sha256::new();
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut HashInto(&mut engine_digest));
        let engine_digest = engine_digest.finalize();
        let name = format!("{}-{}.cwasm", hex::encode(component_sha256), hex::encode(&engine_digest[..8]));
        let mut context = component_sha256.to_vec();
        context.extend_from_slice(&engine_digest);
        (self.dir.join(name), context)
    }

    fn tag(&self, context: &[u8], payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(context);
        mac.update(payload);
        mac
    }

    /// The component compiled from `bytes`: from the cache when a valid entry
    /// is there, else compiled and stored.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> anyhow::Result<(Component, Loaded)> {
        let component_sha256 = Sha256::digest(bytes);
        let (path, context) = self.entry(engine, &component_sha256);
        if let Ok(file) = std::fs::read(&path) {
            match self.verified(&file, &context) {
                Some(payload) => {
                    // SAFETY: `Component::deserialize` trusts its bytes to be
                    // wasmtime's own output for this engine. These are: the tag
                    // is an HMAC under a key only this user can read, over the
                    // component's hash, the engine's configuration and the bytes,
                    // and only this function ever writes such a tag, right after
                    // `Component::serialize`. wasmtime also checks that the bytes
                    // were made for a compatible engine, and refuses them if not.
                    match unsafe { Component::deserialize(engine, payload) } {
                        Ok(component) => return Ok((component, Loaded::Cached)),
                        Err(e) => {
                            tracing::warn!(target: "cache", "{}: refused by wasmtime ({e}); compiling again", path.display())
                        }
                    }
                }
                None => {
                    tracing::warn!(target: "cache", "{}: not written by this host or corrupt; compiling again", path.display())
                }
            }
        }
        let component = Component::from_binary(engine, bytes).map_err(anyhow::Error::from)?;
        if let Err(e) = self.store(&path, &context, &component) {
            tracing::warn!(target: "cache", "cannot write {}: {e}", path.display());
        }
        Ok((component, Loaded::Compiled))
    }

    fn verified<'f>(&self, file: &'f [u8], context: &[u8]) -> Option<&'f [u8]> {
        let rest = file.strip_prefix(MAGIC.as_slice())?;
        if rest.len() < TAG_LEN {
            return None;
        }
        let (tag, payload) = rest.split_at(TAG_LEN);
        self.tag(context, payload).verify_slice(tag).ok()?;
        Some(payload)
    }

    fn store(&self, path: &Path, context: &[u8], component: &Component) -> anyhow::Result<()> {
        let payload = component.serialize().map_err(anyhow::Error::from)?;
        let tag = self.tag(context, &payload).finalize().into_bytes();
        let mut file = Vec::with_capacity(MAGIC.len() + TAG_LEN + payload.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&tag);
        file.extend_from_slice(&payload);
        // Written beside and renamed: a reader sees the old entry or the new one.
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        write_private(&temp, &file, false)?;
        if let Err(e) = std::fs::rename(&temp, path) {
            // E.g. a directory where the entry goes: leave nothing behind.
            let _ = std::fs::remove_file(&temp);
            return Err(e.into());
        }
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| anyhow::anyhow!("cannot create the cache directory {}: {e}", dir.display()))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create the cache directory {}: {e}", dir.display()))
    }
}

fn write_private(path: &Path, bytes: &[u8], create_new: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Owned by this user, with none of the `forbidden` permission bits for
/// others (0o022: writable by nobody else; 0o077: not even readable).
fn check_private(path: &Path, is_dir: bool, forbidden: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::symlink_metadata(path)?;
        anyhow::ensure!(
            metadata.is_dir() == is_dir,
            "{} is not a {}",
            path.display(),
            if is_dir { "directory" } else { "file" }
        );
        let me = current_uid();
        anyhow::ensure!(
            metadata.uid() == me,
            "{} belongs to another user; its entries cannot be trusted",
            path.display()
        );
        anyhow::ensure!(
            metadata.mode() & forbidden == 0,
            "{} is open to other users (mode {:o}); its entries cannot be trusted",
            path.display(),
            metadata.mode() & 0o777
        );
    }
    Ok(())
}

/// This process's (effective) user id: the owner of `/proc/self`.
#[cfg(unix)]
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT: &str = "(component)";

    fn engine() -> Engine {
        Engine::new(&super::super::engine_config()).unwrap()
    }

    #[test]
    fn the_second_load_is_cached_and_a_tampered_entry_is_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::open(&dir.path().join("cache")).unwrap();
        let bytes = wat::parse_str(COMPONENT).unwrap();
        let engine = engine();
        assert_eq!(cache.load(&engine, &bytes).unwrap().1, Loaded::Compiled);
        assert_eq!(cache.load(&engine, &bytes).unwrap().1, Loaded::Cached);
        let entry = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .unwrap();
        // Corrupt: one byte of the payload flipped.
        let mut file = std::fs::read(&entry).unwrap();
        let last = file.len() - 1;
        file[last] ^= 0xff;
        std::fs::write(&entry, &file).unwrap();
        assert_eq!(cache.load(&engine, &bytes).unwrap().1, Loaded::Compiled);
        assert_eq!(cache.load(&engine, &bytes).unwrap().1, Loaded::Cached, "replaced by a good entry");
        // Foreign: wasmtime's own output, but not tagged by this host.
        let foreign = Component::from_binary(&engine, &bytes).unwrap().serialize().unwrap();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&[0; TAG_LEN]);
        file.extend_from_slice(&foreign);
        std::fs::write(&entry, &file).unwrap();
        assert_eq!(cache.load(&engine, &bytes).unwrap().1, Loaded::Compiled);
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = ComponentCache::open(&open).err().unwrap().to_string();
        assert!(error.contains("open to other users (mode 777)"), "{error}");
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        ComponentCache::open(&cache_dir).unwrap();
        std::fs::set_permissions(cache_dir.join("key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = ComponentCache::open(&cache_dir).err().unwrap().to_string();
        assert!(error.contains("key is open to other users (mode 644)"), "{error}");
    }
}
