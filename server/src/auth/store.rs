//! `<home>/auth.json`: its format, reading it, atomic writes, the lock beside it, and moving a
//! malformed file aside.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SubsecRound as _, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// How long [`Store::lock`] waits for another process to release `auth.json.lock`.
pub(crate) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often it tries meanwhile.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// The `auth_mode` written for an API key.
pub(crate) const MODE_API_KEY: &str = "apikey";
/// The `auth_mode` written for a ChatGPT login.
pub(crate) const MODE_CHATGPT: &str = "chatgpt";

/// The contents of `auth.json`, in the contract's field order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct AuthFile {
    /// `"apikey"` or `"chatgpt"`, read case-insensitively; absent in older files.
    #[serde(default)]
    pub auth_mode: Option<String>,
    /// An API key: the key of API-key mode, or one obtained for a ChatGPT login.
    #[serde(rename = "OPENAI_API_KEY", default)]
    pub openai_api_key: Option<Secret>,
    /// The tokens of a ChatGPT login.
    #[serde(default)]
    pub tokens: Option<Tokens>,
    /// When the tokens were last obtained.
    #[serde(default)]
    pub last_refresh: Option<DateTime<Utc>>,
    /// Fields written by other versions, kept as they are when the file is rewritten.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The `tokens` object of a ChatGPT login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tokens {
    /// The OpenID id token (a JWT with email, plan and account).
    pub id_token: Secret,
    /// The access token sent upstream as the bearer.
    pub access_token: Secret,
    /// The refresh token; it rotates on every refresh.
    pub refresh_token: Secret,
    /// The ChatGPT account id.
    #[serde(default)]
    pub account_id: Option<String>,
    /// Fields written by other versions, kept as they are when the file is rewritten.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The credentials an `auth.json` holds, following the contract's precedence.
#[derive(Debug, Clone)]
pub(crate) enum FileCredentials {
    /// API-key mode.
    ApiKey(Secret),
    /// ChatGPT mode.
    ChatGpt(Tokens),
    /// A well-formed file holding no credentials.
    Empty,
    /// A well-formed file whose credentials cannot be used; the message says why.
    Unusable(String),
}

impl AuthFile {
    /// Which credentials the file holds: `auth_mode` when present, else an API key, else tokens.
    pub(crate) fn credentials(&self, path: &Path) -> FileCredentials {
        let key = self.openai_api_key.clone().filter(|k| !k.is_blank());
        match self
            .auth_mode
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some(MODE_API_KEY) => match key {
                Some(key) => FileCredentials::ApiKey(key),
                None => FileCredentials::Unusable(format!(
                    "{} sets auth_mode \"apikey\" but holds no OPENAI_API_KEY: log in again",
                    path.display()
                )),
            },
            Some(MODE_CHATGPT) => match self.tokens.clone() {
                Some(tokens) => FileCredentials::ChatGpt(tokens),
                None => FileCredentials::Unusable(format!(
                    "{} sets auth_mode \"chatgpt\" but holds no tokens: log in again",
                    path.display()
                )),
            },
            Some(other) => FileCredentials::Unusable(format!(
                "{} has an unknown auth_mode {other:?} (expected \"apikey\" or \"chatgpt\"): log in again",
                path.display()
            )),
            None => match (key, self.tokens.clone()) {
                (Some(key), _) => FileCredentials::ApiKey(key),
                (None, Some(tokens)) => FileCredentials::ChatGpt(tokens),
                (None, None) => FileCredentials::Empty,
            },
        }
    }
}

/// What reading `auth.json` found.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "read once per use and never stored in bulk; the size comes from serde_json's \
              `preserve_order` maps, which the ACP SDK turns on for the whole build"
)]
pub(crate) enum Stored {
    /// There is no file.
    Missing,
    /// The file is not valid JSON of the expected shape; the message names file and line.
    Malformed(String),
    /// The file could not be read at all (e.g. permissions); the message says why.
    Unreadable(String),
    /// The parsed file.
    Present(AuthFile),
}

/// The current time as written to `last_refresh` (whole seconds, as in the contract).
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// The files of one home: `auth.json` and its lock.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    home: PathBuf,
    path: PathBuf,
}

/// An exclusive lock on `<home>/auth.json.lock`, released when dropped (closing the file
/// releases the `flock`, also if the process dies).
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

impl Store {
    /// The store of `home`.
    pub(crate) fn new(home: &Path) -> Self {
        Self {
            home: home.to_path_buf(),
            path: home.join("auth.json"),
        }
    }

    /// Path of `auth.json`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and parses `auth.json` off the async threads.
    pub(crate) async fn load(&self) -> Stored {
        // auth.json is a small local file: reading it inline costs a few microseconds, less
        // than handing the read to the blocking pool and waking a thread for it, which made
        // `auth/status` bursts twice as slow.
        self.read()
    }

    /// Reads and parses `auth.json`.
    pub(crate) fn read(&self) -> Stored {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Stored::Missing,
            Err(e) => {
                return Stored::Unreadable(format!(
                    "could not read {}: {e}: check its permissions or log in again",
                    self.path.display()
                ));
            }
        };
        match serde_json::from_slice::<AuthFile>(&bytes) {
            Ok(file) => Stored::Present(file),
            Err(e) => Stored::Malformed(self.malformed_message(&e)),
        }
    }

    /// Says where the file is broken without quoting it: serde's own text can contain the
    /// value it choked on, which may be a token.
    fn malformed_message(&self, e: &serde_json::Error) -> String {
        let what = match e.classify() {
            serde_json::error::Category::Data => "does not have the expected fields",
            _ => "is not valid JSON",
        };
        format!(
            "{} {what} (line {}, column {}): log in again to replace it (the old file will be kept as auth.json.corrupt-<time>)",
            self.path.display(),
            e.line(),
            e.column()
        )
    }

    /// Takes the cross-process lock, waiting at most [`LOCK_WAIT`] for another process to
    /// release it; then fails with `TimedOut`, which callers report as a transient failure.
    pub(crate) async fn lock(&self) -> io::Result<StoreLock> {
        let home = self.home.clone();
        let path = self.home.join("auth.json.lock");
        blocking(move || {
            ensure_home(&home)?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)?;
            // `File::lock` is `flock(LOCK_EX)` on Unix: advisory, per open file, and released
            // by the kernel if this process dies while holding it.
            let give_up = std::time::Instant::now() + LOCK_WAIT;
            loop {
                #[allow(
                    clippy::incompatible_msrv,
                    reason = "File::try_lock is stable since 1.89, the toolchain this project \
                              builds with"
                )]
                match file.try_lock() {
                    Ok(()) => return Ok(StoreLock { _file: file }),
                    Err(std::fs::TryLockError::WouldBlock)
                        if std::time::Instant::now() < give_up =>
                    {
                        std::thread::sleep(LOCK_POLL);
                    }
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "another process has held {} for over {} s",
                                path.display(),
                                LOCK_WAIT.as_secs()
                            ),
                        ));
                    }
                    Err(std::fs::TryLockError::Error(e)) => return Err(e),
                }
            }
        })
        .await
    }

    /// Writes `file` atomically with mode 0600 (see [`Store::write_file`]) while `_lock` is held.
    pub(crate) async fn save(&self, file: AuthFile, _lock: &StoreLock) -> io::Result<()> {
        let store = self.clone();
        blocking(move || store.write_file(&file)).await
    }

    /// Deletes `auth.json` if it exists, while `_lock` is held.
    pub(crate) async fn delete(&self, _lock: &StoreLock) -> io::Result<()> {
        let store = self.clone();
        blocking(move || store.remove_file()).await
    }

    /// Moves a malformed `auth.json` to `auth.json.corrupt-<unix seconds>` so that nothing is
    /// lost when a login or logout replaces it, while `_lock` is held. Returns the new path, or
    /// `None` when the file is missing or well-formed.
    pub(crate) async fn move_aside_if_malformed(
        &self,
        _lock: &StoreLock,
    ) -> io::Result<Option<PathBuf>> {
        let store = self.clone();
        blocking(move || store.move_aside_file()).await
    }

    /// Writes `file` atomically with mode 0600: a temp file in the home, fsync, rename.
    fn write_file(&self, file: &AuthFile) -> io::Result<()> {
        ensure_home(&self.home)?;
        let mut json = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
        json.push(b'\n');
        let mut tmp = tempfile::Builder::new()
            .prefix(".auth.json.")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(&self.home)?;
        tmp.write_all(&json)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        sync_dir(&self.home);
        Ok(())
    }

    fn remove_file(&self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => {
                sync_dir(&self.home);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn move_aside_file(&self) -> io::Result<Option<PathBuf>> {
        if !matches!(self.read(), Stored::Malformed(_)) {
            return Ok(None);
        }
        let secs = Utc::now().timestamp();
        let mut target = self.home.join(format!("auth.json.corrupt-{secs}"));
        let mut n = 1;
        while target.exists() {
            target = self.home.join(format!("auth.json.corrupt-{secs}-{n}"));
            n += 1;
        }
        fs::rename(&self.path, &target)?;
        sync_dir(&self.home);
        tracing::warn!(path = %target.display(), "moved a malformed auth.json aside");
        Ok(Some(target))
    }
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

/// Creates the home with mode 0700 if it does not exist; an existing home is left as it is.
fn ensure_home(home: &Path) -> io::Result<()> {
    if home.is_dir() {
        return Ok(());
    }
    if let Some(parent) = home.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(home) {
        Ok(()) => fs::set_permissions(home, fs::Permissions::from_mode(0o700)),
        // Another process created it in the meantime; it is theirs to have set up.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes a rename or delete durable. Best effort: some file systems refuse to fsync a
/// directory, and the data itself is already safe.
fn sync_dir(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(error = %e, "could not fsync the home directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn tokens() -> Tokens {
        Tokens {
            id_token: Secret::new("id"),
            access_token: Secret::new("access"),
            refresh_token: Secret::new("refresh"),
            account_id: Some("acc".into()),
            extra: serde_json::Map::new(),
        }
    }

    #[tokio::test]
    async fn writes_the_contract_format_with_mode_0600_in_a_new_0700_home() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let store = Store::new(&home);
        let lock = store.lock().await.unwrap();
        let file = AuthFile {
            auth_mode: Some(MODE_CHATGPT.into()),
            tokens: Some(tokens()),
            last_refresh: Some("2026-11-23T10:00:00Z".parse().unwrap()),
            ..AuthFile::default()
        };
        store.save(file, &lock).await.unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(
            written,
            serde_json::json!({
                "auth_mode": "chatgpt",
                "OPENAI_API_KEY": null,
                "tokens": {"id_token": "id", "access_token": "access", "refresh_token": "refresh", "account_id": "acc"},
                "last_refresh": "2026-11-23T10:00:00Z"
            })
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(store.path()), mode(&home)), (0o600, 0o700));
    }

    #[tokio::test]
    async fn an_existing_home_keeps_its_mode_and_unknown_fields_survive_a_rewrite() {
        let home = tempfile::tempdir().unwrap();
        fs::set_permissions(home.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let store = Store::new(home.path());
        fs::write(
            store.path(),
            r#"{"OPENAI_API_KEY":"sk-1","future":{"x":1}}"#,
        )
        .unwrap();
        let Stored::Present(file) = store.read() else {
            panic!("expected a parsed file")
        };
        let lock = store.lock().await.unwrap();
        store.save(file, &lock).await.unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(
            written,
            serde_json::json!({"auth_mode": null, "OPENAI_API_KEY": "sk-1", "tokens": null, "last_refresh": null, "future": {"x": 1}})
        );
        let mode = fs::metadata(home.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
    }

    #[test]
    fn precedence_inside_the_file() {
        let path = Path::new("/h/auth.json");
        let with = |mode: Option<&str>, key: Option<&str>, tokens: bool| AuthFile {
            auth_mode: mode.map(str::to_owned),
            openai_api_key: key.map(Secret::new),
            tokens: tokens.then(super::tests::tokens),
            ..AuthFile::default()
        };
        let kind = |f: AuthFile| match f.credentials(path) {
            FileCredentials::ApiKey(k) => format!("apiKey {}", k.expose()),
            FileCredentials::ChatGpt(t) => format!("chatgpt {}", t.access_token.expose()),
            FileCredentials::Empty => "empty".to_owned(),
            FileCredentials::Unusable(m) => m,
        };
        assert_eq!(
            kind(with(Some("ChatGPT"), Some("sk"), true)),
            "chatgpt access"
        );
        assert_eq!(kind(with(Some("APIKEY"), Some("sk"), true)), "apiKey sk");
        assert_eq!(kind(with(None, Some("sk"), true)), "apiKey sk");
        assert_eq!(kind(with(None, Some("  "), true)), "chatgpt access");
        assert_eq!(kind(with(None, None, false)), "empty");
        assert_eq!(
            kind(with(Some("apikey"), None, true)),
            "/h/auth.json sets auth_mode \"apikey\" but holds no OPENAI_API_KEY: log in again"
        );
        assert_eq!(
            kind(with(Some("magic"), None, true)),
            "/h/auth.json has an unknown auth_mode \"magic\" (expected \"apikey\" or \"chatgpt\"): log in again"
        );
    }

    #[tokio::test]
    async fn malformed_files_are_reported_by_line_without_their_content_and_moved_aside_on_request()
    {
        let home = tempfile::tempdir().unwrap();
        let store = Store::new(home.path());
        let text = "{\n  \"OPENAI_API_KEY\": \"sk-secret\",\n  \"tokens\": 5\n}\n";
        fs::write(store.path(), text).unwrap();
        let Stored::Malformed(message) = store.read() else {
            panic!("expected malformed")
        };
        assert_eq!(
            message,
            format!(
                "{} does not have the expected fields (line 3, column 13): log in again to replace it (the old file will be kept as auth.json.corrupt-<time>)",
                store.path().display()
            )
        );
        let lock = store.lock().await.unwrap();
        let moved = store.move_aside_if_malformed(&lock).await.unwrap().unwrap();
        assert_eq!(fs::read_to_string(&moved).unwrap(), text);
        assert!(
            moved
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("auth.json.corrupt-")
        );
        assert!(matches!(store.read(), Stored::Missing));
        assert_eq!(store.move_aside_if_malformed(&lock).await.unwrap(), None);
    }
}
