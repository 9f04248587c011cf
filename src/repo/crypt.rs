//! Encryption at rest: every object that holds the database's data (WAL
//! segments and `.partial`s, history and `.backup` files, each segment's
//! transaction list, backup files and chunks, backup and snapshot
//! manifests) is sealed with AES-256-GCM under a key the operator keeps;
//! the catalog (`pitr.json`, `catalog/`, `claims/`) stays readable without
//! it, so `info`, `plan`, `check` and `expire` work without the key.
//!
//! A key is 32 random bytes, written in a key file (or `PITR_KEY`) as 64
//! hex digits or base64. Two keys are derived from it with BLAKE3's key
//! derivation: the cipher key, and an 8-byte key id that names it (it
//! tells a wrong key from the right one and says nothing of the key).
//! `pitr.json` lists the ids of every key the repository's objects may
//! carry (`catalog::Encryption`), so keys can rotate: new objects are
//! sealed with the newest listed key given, and an object is opened with
//! whichever given key its header names.
//!
//! A sealed object:
//!
//! ```text
//! "PITRENC1" | key id (8) | nonce (12, random) | ciphertext | tag (16)
//! ```
//!
//! The tag also covers the header and the object's key (its name in the
//! repository): an object moved or copied under another name does not
//! open, so a segment cannot be passed off as another. Random 96-bit
//! nonces keep one key safe for about 2^32 objects (NIST SP 800-38D);
//! at 16 MiB segments that is 64 PiB of WAL, and rotating the key resets
//! the count.
//!
//! `CryptStore` does this below everything else: it wraps the store of
//! every `Repo`, learns from `pitr.json` whether the repository is
//! encrypted, and seals and opens data objects on their way, so no
//! writer or reader above it needs to know. Sizes it lists are the
//! plaintext's, as the catalog records them. A reader given no key reads
//! an object in the clear without asking `pitr.json` first (no extra
//! round trip for a `wal-fetch` from a repository in the clear).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::OnceCell;

use super::store::{ObjectKey, ObjectMeta, ObjectReader, PutMode, Store, StoreError};
use super::{layout, KIND_CONFIG};
use crate::catalog::{Encryption, Envelope, RepoConfig};

/// The cipher, as `pitr.json` names it.
pub const CIPHER: &str = "aes-256-gcm";
const MAGIC: &[u8; 8] = b"PITRENC1";
const ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + ID_LEN + NONCE_LEN;
/// How many bytes sealing adds to an object.
pub const OVERHEAD: u64 = (HEADER_LEN + TAG_LEN) as u64;

/// The environment variable that may hold a key itself.
pub const KEY_ENV: &str = "PITR_KEY";

const HOW_TO_MAKE: &str =
    "make one with `openssl rand -base64 32 > FILE; chmod 600 FILE` (or `head -c 32 /dev/urandom | base64`)";

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("cannot read key file {path}: {source}")]
    ReadKey {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{from} does not hold a key: a key is 32 random bytes written as 64 hex digits or as base64; {HOW_TO_MAKE}")]
    BadKey { from: String },
    #[error("repository {repo} is encrypted (key {ids}): give its key with --key-file FILE or the PITR_KEY environment variable")]
    KeyNeeded { repo: String, ids: String },
    #[error("repository {repo} is not encrypted, but a key was given ({given}): drop --key-file / PITR_KEY for it (a key cannot be added to a repository written in the clear)")]
    NotEncrypted { repo: String, given: String },
    #[error("wrong key for repository {repo}: the key given has id {given}, the repository's keys are {known}")]
    WrongKey {
        repo: String,
        given: String,
        known: String,
    },
    #[error("object {object} is sealed with key {id}, which was not given (given: {given}): give that key too (--key-file may be repeated)")]
    KeyNotGiven {
        object: String,
        id: String,
        given: String,
    },
    #[error("object {object} does not open with key {id}: it was altered, truncated or moved from another name")]
    Tampered { object: String, id: String },
    #[error("object {object} is not encrypted, but repository {repo} is: it was not written by pitr with the repository's key")]
    Plaintext { object: String, repo: String },
    #[error(
        "repository {repo} uses cipher {cipher:?}, which this pitr does not know: upgrade pitr"
    )]
    Cipher { repo: String, cipher: String },
    #[error("repository {repo}: its pitr.json cannot be read ({reason})")]
    Config { repo: String, reason: String },
    #[error("the system's random number generator failed")]
    Random,
}

/// A key's public name: 8 bytes derived from it, shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyId([u8; ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A key ready to seal and open; shows only its id.
pub struct Key {
    id: KeyId,
    aead: LessSafeKey,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

impl Key {
    /// A key from its text (64 hex digits or base64 of 32 bytes,
    /// surrounding whitespace ignored) or its 32 raw bytes; `from` names
    /// where it came from, for the refusal.
    pub fn parse(text: &[u8], from: &str) -> Result<Key, CryptError> {
        let bad = || CryptError::BadKey {
            from: from.to_string(),
        };
        let trimmed = std::str::from_utf8(text).map(str::trim).ok();
        let decoded = trimmed.and_then(|t| {
            if t.len() == 64 {
                hex::decode(t).ok()
            } else {
                base64::engine::general_purpose::STANDARD.decode(t).ok()
            }
        });
        let bytes = match decoded {
            Some(b) => b,
            None if text.len() == 32 => text.to_vec(),
            None => return Err(bad()),
        };
        let master: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(Key::from_master(&master))
    }

    fn from_master(master: &[u8; 32]) -> Key {
        let id_bytes = blake3::derive_key("pitr 2026-11 repository key id", master);
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&id_bytes[..ID_LEN]);
        let data = blake3::derive_key("pitr 2026-11 repository data key", master);
        // A 32-byte key is always the length AES-256-GCM takes.
        let aead = match UnboundKey::new(&AES_256_GCM, &data) {
            Ok(k) => LessSafeKey::new(k),
            Err(_) => unreachable!("AES-256-GCM takes 32-byte keys"),
        };
        Key {
            id: KeyId(id),
            aead,
        }
    }

    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// Where keys come from: key files (`--key-file`, repeatable;
/// `PITR_KEY_FILE`, `:`-separated) and `PITR_KEY`. Kept as given so that
/// commands pitr writes for Postgres (`restore_command`,
/// `archive_command`) name the same files; a key from `PITR_KEY` reaches
/// them through the environment the server inherits.
#[derive(Clone, Default)]
pub struct KeySource {
    pub files: Vec<PathBuf>,
    pub env_key: Option<String>,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySource")
            .field("files", &self.files)
            .field("env_key", &self.env_key.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl KeySource {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.env_key.is_none()
    }

    /// Reads every key: files in order, then `PITR_KEY`.
    pub fn load(&self) -> Result<Keyring, CryptError> {
        let mut keys = Vec::new();
        for path in &self.files {
            keys.push(read_key_file(path)?);
        }
        if let Some(text) = &self.env_key {
            keys.push(Key::parse(text.as_bytes(), KEY_ENV)?);
        }
        Ok(Keyring { keys })
    }

    /// The flags that give another pitr process the same key files, with
    /// absolute paths (it may run elsewhere).
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.files {
            let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
            out.push("--key-file".to_string());
            out.push(abs.display().to_string());
        }
        out
    }
}

fn read_key_file(path: &Path) -> Result<Key, CryptError> {
    let text = std::fs::read(path).map_err(|source| CryptError::ReadKey {
        path: path.display().to_string(),
        source,
    })?;
    Key::parse(&text, &format!("key file {}", path.display()))
}

/// The keys given to one process.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The first key given: what a new repository is sealed with.
    pub fn first(&self) -> Option<&Key> {
        self.keys.first()
    }

    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }

    fn find(&self, id: KeyId) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    fn listed(&self) -> String {
        join(self.ids().iter().map(|i| i.to_string()))
    }
}

fn join(it: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = it.collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// What `pitr.json` says for a new repository sealed with `key`.
pub fn encryption_for(key: &Key, now: chrono::DateTime<chrono::Utc>) -> Encryption {
    Encryption {
        cipher: CIPHER.to_string(),
        keys: vec![crate::catalog::KeyRecord {
            id: key.id.to_string(),
            added_at: now,
        }],
    }
}

/// Whether an object holds the database's data (and is sealed in an
/// encrypted repository): everything but the catalog.
pub fn holds_data(key: &ObjectKey) -> bool {
    let s = key.as_str();
    !(s == layout::CONFIG
        || s.starts_with(&format!("{}/", layout::CATALOG_DIR))
        || s.starts_with(&format!("{}/", layout::CLAIMS_DIR)))
}

fn aad(header: &[u8], object: &ObjectKey) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + object.as_str().len());
    a.extend_from_slice(header);
    a.extend_from_slice(object.as_str().as_bytes());
    a
}

/// Seals `plain` as object `object` with `key`.
pub fn seal(key: &Key, object: &ObjectKey, plain: &[u8]) -> Result<Vec<u8>, CryptError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CryptError::Random)?;
    let mut out = Vec::with_capacity(plain.len() + OVERHEAD as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&key.id.0);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let (header, body) = out.split_at_mut(HEADER_LEN);
    let tag = key
        .aead
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(header, object)),
            body,
        )
        .map_err(|_| CryptError::Random)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Whether stored bytes are a sealed object (by their first bytes).
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(MAGIC)
}

/// Opens a sealed object `object` of repository `repo` with whichever of
/// `keys` its header names.
pub fn open(
    keys: &Keyring,
    repo: &str,
    object: &ObjectKey,
    stored: &[u8],
) -> Result<Vec<u8>, CryptError> {
    if !is_sealed(stored) {
        return Err(CryptError::Plaintext {
            object: object.to_string(),
            repo: repo.to_string(),
        });
    }
    let mut id = [0u8; ID_LEN];
    if let Some(stored_id) = stored.get(MAGIC.len()..MAGIC.len() + ID_LEN) {
        id.copy_from_slice(stored_id);
    }
    let id = KeyId(id);
    if stored.len() < OVERHEAD as usize {
        return Err(CryptError::Tampered {
            object: object.to_string(),
            id: id.to_string(),
        });
    }
    let key = keys.find(id).ok_or_else(|| CryptError::KeyNotGiven {
        object: object.to_string(),
        id: id.to_string(),
        given: keys.listed(),
    })?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&stored[MAGIC.len() + ID_LEN..HEADER_LEN]);
    let mut body = stored[HEADER_LEN..].to_vec();
    let plain_len = key
        .aead
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(&stored[..HEADER_LEN], object)),
            &mut body,
        )
        .map_err(|_| CryptError::Tampered {
            object: object.to_string(),
            id: id.to_string(),
        })?
        .len();
    body.truncate(plain_len);
    Ok(body)
}

/// What a `CryptStore` learned from `pitr.json`.
#[derive(Debug)]
enum Mode {
    Plain,
    /// Encrypted; `write` is the key new objects are sealed with (None
    /// when no key was given: data can be neither read nor written).
    Sealed {
        ids: String,
        write: Option<KeyId>,
    },
}

/// Seals and opens the data objects of an encrypted repository on their
/// way to and from `inner` (see the module comment); passes everything
/// through for a repository in the clear. With keys given for a
/// repository that is not encrypted, or keys it does not know, every
/// operation is refused.
pub struct CryptStore {
    inner: Arc<dyn Store>,
    repo: String,
    keys: Keyring,
    mode: OnceCell<Mode>,
}

impl fmt::Debug for CryptStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptStore")
            .field("inner", &self.inner)
            .field("keys", &self.keys.ids())
            .finish_non_exhaustive()
    }
}

fn crypt(e: CryptError) -> StoreError {
    StoreError::Crypt(Box::new(e))
}

impl CryptStore {
    /// `repo` names the repository in messages.
    pub fn new(inner: Arc<dyn Store>, repo: String, keys: Keyring) -> CryptStore {
        CryptStore {
            inner,
            repo,
            keys,
            mode: OnceCell::new(),
        }
    }

    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// The keys given.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// Takes the repository's record read by someone else (it saves a
    /// read); refuses keys that do not fit it.
    pub fn learn(&self, config: &RepoConfig) -> Result<(), CryptError> {
        let mode = self.mode_for(config)?;
        let _ = self.mode.set(mode);
        Ok(())
    }

    fn mode_for(&self, config: &RepoConfig) -> Result<Mode, CryptError> {
        let Some(enc) = &config.encryption else {
            if self.keys.is_empty() {
                return Ok(Mode::Plain);
            }
            return Err(CryptError::NotEncrypted {
                repo: self.repo.clone(),
                given: self.keys.listed(),
            });
        };
        if enc.cipher != CIPHER {
            return Err(CryptError::Cipher {
                repo: self.repo.clone(),
                cipher: enc.cipher.clone(),
            });
        }
        let ids = join(enc.keys.iter().map(|k| k.id.clone()));
        // Every key given must be one of the repository's; new objects
        // take the newest of them.
        let mut write = None;
        for id in self.keys.ids() {
            let Some(pos) = enc.keys.iter().position(|k| k.id == id.to_string()) else {
                return Err(CryptError::WrongKey {
                    repo: self.repo.clone(),
                    given: id.to_string(),
                    known: ids,
                });
            };
            if write.is_none_or(|(p, _)| pos > p) {
                write = Some((pos, id));
            }
        }
        Ok(Mode::Sealed {
            ids,
            write: write.map(|(_, id)| id),
        })
    }

    async fn mode(&self) -> Result<&Mode, StoreError> {
        static PLAIN: Mode = Mode::Plain;
        if let Some(m) = self.mode.get() {
            return Ok(m);
        }
        let bytes = match self.inner.get(&layout::config()).await {
            // Not initialized yet: in the clear, until `pitr.json` says
            // otherwise (not kept: init may write it next).
            Err(StoreError::NotFound(_)) if self.keys.is_empty() => return Ok(&PLAIN),
            other => other?,
        };
        let config: RepoConfig = Envelope::open(KIND_CONFIG, &bytes).map_err(|e| {
            crypt(CryptError::Config {
                repo: self.repo.clone(),
                reason: e.to_string(),
            })
        })?;
        let mode = self.mode_for(&config).map_err(crypt)?;
        Ok(self.mode.get_or_init(|| async { mode }).await)
    }

    /// The mode, for a data object only (the catalog never needs it).
    async fn data_mode(&self, key: &ObjectKey) -> Result<Option<&Mode>, StoreError> {
        if !holds_data(key) {
            return Ok(None);
        }
        match self.mode().await? {
            Mode::Plain => Ok(None),
            m => Ok(Some(m)),
        }
    }

    fn seal_with(&self, mode: &Mode, key: &ObjectKey, data: &[u8]) -> Result<Vec<u8>, StoreError> {
        let Mode::Sealed { ids, write } = mode else {
            return Ok(data.to_vec());
        };
        let id = write.ok_or_else(|| self.key_needed(ids))?;
        let k = self.keys.find(id).ok_or_else(|| self.key_needed(ids))?;
        seal(k, key, data).map_err(crypt)
    }

    fn open_with(
        &self,
        mode: &Mode,
        key: &ObjectKey,
        stored: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let Mode::Sealed { ids, .. } = mode else {
            return Ok(stored.to_vec());
        };
        if self.keys.is_empty() {
            return Err(self.key_needed(ids));
        }
        open(&self.keys, &self.repo, key, stored).map_err(crypt)
    }

    fn key_needed(&self, ids: &str) -> StoreError {
        crypt(CryptError::KeyNeeded {
            repo: self.repo.clone(),
            ids: ids.to_string(),
        })
    }

    /// Plaintext sizes for listed data objects of a sealed repository.
    async fn plain_size(&self, mut meta: ObjectMeta) -> Result<ObjectMeta, StoreError> {
        if self.data_mode(&meta.key).await?.is_some() {
            meta.size = meta.size.saturating_sub(OVERHEAD);
        }
        Ok(meta)
    }
}

#[async_trait]
impl Store for CryptStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }
    async fn put(&self, key: &ObjectKey, data: &[u8], mode: PutMode) -> Result<(), StoreError> {
        match self.data_mode(key).await? {
            Some(m) => {
                let sealed = self.seal_with(m, key, data)?;
                self.inner.put(key, &sealed, mode).await
            }
            None => self.inner.put(key, data, mode).await,
        }
    }
    async fn put_reader(
        &self,
        key: &ObjectKey,
        mut reader: ObjectReader,
        mode: PutMode,
    ) -> Result<u64, StoreError> {
        let Some(m) = self.data_mode(key).await? else {
            return self.inner.put_reader(key, reader, mode).await;
        };
        let mut data = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut data)
            .await
            .map_err(|source| StoreError::Io {
                op: "reading what to store in",
                path: key.to_string(),
                source,
            })?;
        let sealed = self.seal_with(m, key, &data)?;
        self.inner.put(key, &sealed, mode).await?;
        Ok(data.len() as u64)
    }
    async fn put_deferred(&self, key: &ObjectKey, data: Vec<u8>) -> Result<(), StoreError> {
        match self.data_mode(key).await? {
            Some(m) => {
                let sealed = self.seal_with(m, key, &data)?;
                self.inner.put_deferred(key, sealed).await
            }
            None => self.inner.put_deferred(key, data).await,
        }
    }
    fn get_blocking(&self, key: &ObjectKey) -> Option<Result<Vec<u8>, StoreError>> {
        if !holds_data(key) {
            return self.inner.get_blocking(key);
        }
        // Only once the mode is known (the async path learns it).
        match self.mode.get()? {
            Mode::Plain => self.inner.get_blocking(key),
            mode => {
                let got = self.inner.get_blocking(key)?;
                Some(got.and_then(|stored| self.open_with(mode, key, &stored)))
            }
        }
    }
    async fn sweep_abandoned(&self) -> Result<usize, StoreError> {
        self.inner.sweep_abandoned().await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
    async fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        // No key, and `pitr.json` not read yet: an object in the clear
        // needs no more (the common case costs no extra read: wal-fetch's
        // first get); a sealed one is refused, saying which key it needs.
        if holds_data(key) && self.keys.is_empty() && self.mode.get().is_none() {
            let stored = self.inner.get(key).await?;
            if !is_sealed(&stored) {
                return Ok(stored);
            }
            let mode = self.mode().await?;
            return self.open_with(mode, key, &stored);
        }
        match self.data_mode(key).await? {
            Some(m) => {
                let stored = self.inner.get(key).await?;
                self.open_with(m, key, &stored)
            }
            None => self.inner.get(key).await,
        }
    }
    async fn open_read(&self, key: &ObjectKey) -> Result<ObjectReader, StoreError> {
        match self.data_mode(key).await? {
            Some(m) => {
                let stored = self.inner.get(key).await?;
                let plain = self.open_with(m, key, &stored)?;
                Ok(Box::new(std::io::Cursor::new(plain)))
            }
            None => self.inner.open_read(key).await,
        }
    }
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        match self.inner.head(key).await? {
            Some(meta) => Ok(Some(self.plain_size(meta).await?)),
            None => Ok(None),
        }
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let listed = self.inner.list(prefix).await?;
        let mut out = Vec::with_capacity(listed.len());
        for meta in listed {
            out.push(self.plain_size(meta).await?);
        }
        Ok(out)
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        self.inner.delete_prefix(prefix).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::store::{conformance, MemoryStore};

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key(hex_text: &str) -> Key {
        Key::parse(hex_text.as_bytes(), "test").unwrap()
    }

    fn other_key() -> Key {
        key(&"ab".repeat(32))
    }

    fn obj(s: &str) -> ObjectKey {
        ObjectKey::new(s).unwrap()
    }

    fn encrypted_config(keys: &[&Key]) -> RepoConfig {
        let mut c = crate::plan::testkit::config();
        let now = chrono::Utc::now();
        c.encryption = Some(Encryption {
            cipher: CIPHER.into(),
            keys: keys
                .iter()
                .map(|k| crate::catalog::KeyRecord {
                    id: k.id().to_string(),
                    added_at: now,
                })
                .collect(),
        });
        c
    }

    #[test]
    fn a_key_is_read_as_hex_base64_or_raw_bytes_and_anything_else_is_refused() {
        let raw: Vec<u8> = (0u8..32).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        let ids: Vec<KeyId> = [
            format!("{HEX}\n").into_bytes(),
            format!("  {b64}\n").into_bytes(),
            raw.clone(),
        ]
        .iter()
        .map(|t| Key::parse(t, "k").unwrap().id())
        .collect();
        assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
        assert_eq!(ids[0].to_string().len(), 16);
        assert_ne!(ids[0], other_key().id());
        for bad in [
            &b"short"[..],
            &HEX.as_bytes()[..62],
            b"correct horse battery staple, a passphrase",
            &[0u8; 31],
        ] {
            let e = Key::parse(bad, "key file /k").unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("key file /k does not hold a key: a key is 32 random bytes"),
                "{e}"
            );
        }
    }

    #[test]
    fn sealed_objects_open_only_with_their_key_under_their_name() {
        let k = key(HEX);
        let name = obj("wal/00000001/000000010000000000000001.abc.zst");
        let plain = b"the database's data".repeat(100);
        let sealed = seal(&k, &name, &plain).unwrap();
        assert_eq!(sealed.len() as u64, plain.len() as u64 + OVERHEAD);
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(19).any(|w| w == b"the database's data"));
        // Two seals of the same bytes differ (random nonces).
        assert_ne!(seal(&k, &name, &plain).unwrap(), sealed);

        let ring = Keyring {
            keys: vec![other_key(), key(HEX)],
        };
        assert_eq!(open(&ring, "R", &name, &sealed).unwrap(), plain);

        // Every byte flipped anywhere (header, body, tag) is refused.
        for at in [0, 9, 17, 30, sealed.len() / 2, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(open(&ring, "R", &name, &bad).is_err(), "byte {at}");
        }
        for cut in [sealed.len() - 1, OVERHEAD as usize - 1, 12] {
            assert!(matches!(
                open(&ring, "R", &name, &sealed[..cut]),
                Err(CryptError::Tampered { .. })
            ));
        }
        // Moved under another name: refused.
        let moved = obj("wal/00000001/000000010000000000000002.abc.zst");
        let e = open(&ring, "R", &moved, &sealed).unwrap_err();
        assert!(matches!(e, CryptError::Tampered { .. }), "{e}");
        // Its key not given.
        let only_other = Keyring {
            keys: vec![other_key()],
        };
        let e = open(&only_other, "R", &name, &sealed).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "object {name} is sealed with key {}, which was not given (given: {}): give that key too (--key-file may be repeated)",
                k.id(),
                other_key().id()
            )
        );
        // Stored in the clear (a zstd frame).
        let z = crate::repo::codec::compress(&plain).unwrap();
        assert!(matches!(
            open(&ring, "R", &name, &z),
            Err(CryptError::Plaintext { .. })
        ));
    }

    #[test]
    fn only_the_catalog_is_left_in_the_clear() {
        for data in [
            "wal/00000001/000000010000000000000001.0123.zst",
            "wal/00000001/000000010000000000000001.json",
            "history/00000002.history.zst",
            "backups/20260101T000000Z/files/3.zst",
            "backups/20260101T000000Z/manifest.json",
        ] {
            assert!(holds_data(&obj(data)), "{data}");
        }
        for meta in [
            "pitr.json",
            "catalog/backups/x.json",
            "catalog/wal/00000001/chunk-0.json",
            "claims/x.json",
        ] {
            assert!(!holds_data(&obj(meta)), "{meta}");
        }
    }

    #[tokio::test]
    async fn a_crypt_store_passes_the_conformance_suite_and_stores_only_ciphertext() {
        let inner = Arc::new(MemoryStore::new());
        let s = CryptStore::new(
            inner.clone(),
            "R".into(),
            Keyring {
                keys: vec![key(HEX)],
            },
        );
        s.learn(&encrypted_config(&[&key(HEX)])).unwrap();
        conformance::suite(Arc::new(s)).await;

        let s = CryptStore::new(
            inner.clone(),
            "R".into(),
            Keyring {
                keys: vec![key(HEX)],
            },
        );
        s.learn(&encrypted_config(&[&key(HEX)])).unwrap();
        let seg = obj("wal/00000001/000000010000000000000009.zst");
        s.put(&seg, b"segment bytes", PutMode::Create)
            .await
            .unwrap();
        let stored = inner.get(&seg).await.unwrap();
        assert!(is_sealed(&stored));
        assert_eq!(s.get(&seg).await.unwrap(), b"segment bytes");
        assert_eq!(s.head(&seg).await.unwrap().unwrap().size, 13);
        assert_eq!(inner.head(&seg).await.unwrap().unwrap().size, 13 + OVERHEAD);
        // The catalog stays readable without the key.
        let cat = obj("catalog/backups/b.json");
        s.put(&cat, b"{}", PutMode::Create).await.unwrap();
        assert_eq!(inner.get(&cat).await.unwrap(), b"{}");

        // Without a key: the catalog still reads, data does not.
        let keyless = CryptStore::new(inner.clone(), "R".into(), Keyring::default());
        keyless.learn(&encrypted_config(&[&key(HEX)])).unwrap();
        assert_eq!(keyless.get(&cat).await.unwrap(), b"{}");
        let e = keyless.get(&seg).await.unwrap_err().to_string();
        assert!(e.starts_with("repository R is encrypted (key "), "{e}");
        let e = keyless.put(&seg, b"x", PutMode::Overwrite).await;
        assert!(e.is_err());
        assert_eq!(s.get(&seg).await.unwrap(), b"segment bytes");
    }

    #[tokio::test]
    async fn a_keyless_read_of_a_clear_object_needs_no_pitr_json_but_a_sealed_one_is_refused() {
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let seg = obj("wal/00000001/000000010000000000000001.zst");
        inner
            .put(&seg, b"zstd bytes", PutMode::Create)
            .await
            .unwrap();
        // A pitr.json that does not even read: never asked.
        inner
            .put(&layout::config(), b"{}", PutMode::Create)
            .await
            .unwrap();
        let s = CryptStore::new(inner.clone(), "R".into(), Keyring::default());
        assert_eq!(s.get(&seg).await.unwrap(), b"zstd bytes");
        // A sealed object in a repository whose pitr.json says encrypted.
        let k = key(HEX);
        let sealed_key = obj("wal/00000001/000000010000000000000002.zst");
        inner
            .put(
                &sealed_key,
                &seal(&k, &sealed_key, b"x").unwrap(),
                PutMode::Create,
            )
            .await
            .unwrap();
        let config = encrypted_config(&[&k]);
        inner
            .put(
                &layout::config(),
                &Envelope::seal(KIND_CONFIG, &config).unwrap(),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
        let s = CryptStore::new(inner.clone(), "R".into(), Keyring::default());
        let e = s.get(&sealed_key).await.unwrap_err().to_string();
        assert_eq!(
            e,
            format!("repository R is encrypted (key {}): give its key with --key-file FILE or the PITR_KEY environment variable", k.id())
        );
    }

    #[tokio::test]
    async fn keys_that_do_not_fit_the_repository_are_refused() {
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let k = key(HEX);
        // A wrong key for an encrypted repository.
        let s = CryptStore::new(
            inner.clone(),
            "R".into(),
            Keyring {
                keys: vec![other_key()],
            },
        );
        let e = s.learn(&encrypted_config(&[&k])).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "wrong key for repository R: the key given has id {}, the repository's keys are {}",
                other_key().id(),
                k.id()
            )
        );
        // A key for a repository in the clear.
        let s = CryptStore::new(
            inner.clone(),
            "R".into(),
            Keyring {
                keys: vec![key(HEX)],
            },
        );
        let e = s.learn(&crate::plan::testkit::config()).unwrap_err();
        assert!(matches!(e, CryptError::NotEncrypted { .. }), "{e}");
        // Read from pitr.json when not learned: every operation refused.
        let config = crate::plan::testkit::config();
        inner
            .put(
                &layout::config(),
                &Envelope::seal(KIND_CONFIG, &config).unwrap(),
                PutMode::Create,
            )
            .await
            .unwrap();
        let e = s.get(&obj("wal/00000001/x.zst")).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Crypt(c) if matches!(**c, CryptError::NotEncrypted { .. })),
            "{e}"
        );
    }

    #[tokio::test]
    async fn after_a_rotation_new_objects_take_the_newest_key_and_old_ones_still_open() {
        let (old, new) = (key(HEX), other_key());
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let config = encrypted_config(&[&old, &new]);
        let before = CryptStore::new(
            inner.clone(),
            "R".into(),
            Keyring {
                keys: vec![key(HEX)],
            },
        );
        before.learn(&encrypted_config(&[&old])).unwrap();
        let a = obj("wal/00000001/a.zst");
        before.put(&a, b"old", PutMode::Create).await.unwrap();

        // Given in either order, the newest listed key seals.
        let after = CryptStore::new(
            inner.clone(),
            "R".into(),
            Keyring {
                keys: vec![key(HEX), other_key()],
            },
        );
        after.learn(&config).unwrap();
        let b = obj("wal/00000001/b.zst");
        after.put(&b, b"new", PutMode::Create).await.unwrap();
        let stored = inner.get(&b).await.unwrap();
        assert_eq!(&stored[8..16], &new.id().0);
        assert_eq!(after.get(&a).await.unwrap(), b"old");
        assert_eq!(after.get(&b).await.unwrap(), b"new");
    }
}
