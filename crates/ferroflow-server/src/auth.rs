//! Who may call what: bearer tokens with roles, and the `Host`/`Origin` checks that keep a
//! web page (DNS rebinding, cross-site requests) from reaching a server on loopback.
//!
//! Every route but `/api/health` needs a token. Reads need `viewer`, writes `operator`, token
//! management `admin`; a workflow whose jobs run commands or user code needs `admin` too (the
//! submit handler checks that, since it depends on the spec). The admin token given at start
//! (`--token`, `FERROFLOW_TOKEN`, or the data directory's `token` file) is compared in
//! constant time; other tokens are looked up by the hash of their secret.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, header};
use ferroflow_meta::{MetaStore, Role, check_secret, hashes_match, new_secret, secret_hash};

use crate::error::ApiError;

/// The caller of a request, once authenticated (a request extension for handlers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (`admin` for the token given at start).
    pub name: String,
    /// What it may do.
    pub role: Role,
}

pub(crate) fn forbidden(have: &Role, need: Role, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("{what} needs the {need} role; this token is {have}"),
    )
}

/// How requests are checked.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// [`secret_hash`] of the start-up admin token (the secret itself is not kept).
    admin_hash: Arc<str>,
    /// Host names (without port) a request's `Host` may name; empty: any.
    allowed_hosts: Arc<[String]>,
    /// Origins (`scheme://host[:port]`) allowed besides the server's own.
    allowed_origins: Arc<[String]>,
}

/// Host names a server on loopback answers to.
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl AuthConfig {
    /// Checks with `admin_secret` as the start-up admin token. `allowed_hosts` empty means
    /// any `Host` (for a server bound to a public address behind a proxy); a server on
    /// loopback passes [`LOOPBACK_HOSTS`] plus whatever names it is reached by.
    pub fn new(
        admin_secret: &str,
        allowed_hosts: Vec<String>,
        allowed_origins: Vec<String>,
    ) -> Result<Self, ferroflow_meta::MetaError> {
        check_secret(admin_secret)?;
        Ok(AuthConfig {
            admin_hash: Arc::from(secret_hash(admin_secret)),
            allowed_hosts: allowed_hosts
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            allowed_origins: allowed_origins
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        })
    }

    /// Check `Host` and `Origin` (before any token is looked at: a refused page learns
    /// nothing).
    pub(crate) fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let refused = |m: String| ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", m);
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !self.allowed_hosts.is_empty() {
            let name = host_name(&host);
            if !self.allowed_hosts.iter().any(|h| h == name) {
                return Err(refused(format!(
                    "Host '{host}' is not one this server answers to (allowed: {}; add names with --allowed-host)",
                    self.allowed_hosts.join(", ")
                )));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
            let own = ["http://", "https://"]
                .iter()
                .any(|s| origin.strip_prefix(s) == Some(host.as_str()));
            if !own && !self.allowed_origins.contains(&origin) {
                return Err(refused(format!(
                    "Origin '{origin}' is not this server's ('{host}'); allow others with --allowed-origin"
                )));
            }
        } else if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site")
        {
            return Err(refused(
                "cross-site browser request without an Origin".into(),
            ));
        }
        Ok(())
    }

    /// Who sent `headers`: the bearer token's caller.
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        store: &dyn MetaStore,
    ) -> Result<Caller, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "this server requires 'Authorization: Bearer <token>' (the token is in the server's data directory, file 'token')",
            ));
        };
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be 'Bearer <token>'"))?;
        if secret.is_empty() {
            return Err(unauthorized("an empty token is not a token"));
        }
        // One hash per request: compared (in constant time) with the admin token's, or
        // looked up.
        let hash = secret_hash(secret);
        if hashes_match(&hash, &self.admin_hash) {
            return Ok(Caller {
                name: "admin".into(),
                role: Role::Admin,
            });
        }
        match store.token_by_hash(&hash).await? {
            Some(t) => Ok(Caller {
                name: t.name,
                role: t.role,
            }),
            None => Err(unauthorized("unknown or revoked token")),
        }
    }
}

/// The role a route needs whatever its body says: token management is admin's, writes are
/// an operator's, reads a viewer's. (Unknown methods count as writes.)
pub(crate) fn required_role(method: &Method, path: &str) -> Role {
    if path == "/api/tokens" || path.starts_with("/api/tokens/") {
        Role::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Role::Viewer
    } else {
        Role::Operator
    }
}

/// `name` of `name:port` (and of `[v6]:port`).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map(|i| &host[..=i]).unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// The data directory's token file.
pub fn token_file(data_dir: &Path) -> PathBuf {
    data_dir.join("token")
}

/// Why the start-up token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// Reading or writing the file failed.
    #[error("token file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file may be read by others, or holds no usable token.
    #[error("token file {}: {message}", path.display())]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The admin token of a data directory: read from `<data_dir>/token`, or made and written
/// there (mode 0600, created exclusively) at first start. A file others may read is refused.
pub fn load_or_create_token(data_dir: &Path) -> Result<String, TokenFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(token) = read_token(data_dir)? {
        return Ok(token);
    }
    let path = token_file(data_dir);
    let io = |source| TokenFileError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let token = new_secret().map_err(|e| TokenFileError::Unsafe {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    writeln!(f, "{token}").map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(token)
}

/// The token in `<data_dir>/token`, if the file exists (what a client on this machine
/// sends). A file others may read, or one holding no usable token, is refused.
pub fn read_token(data_dir: &Path) -> Result<Option<String>, TokenFileError> {
    use std::os::unix::fs::PermissionsExt;
    let path = token_file(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TokenFileError::Io { path, source }),
    };
    let unsafe_file = |message: String| TokenFileError::Unsafe {
        path: path.clone(),
        message,
    };
    let mode = std::fs::metadata(&path)
        .map_err(|source| TokenFileError::Io {
            path: path.clone(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(unsafe_file(format!(
            "mode {:o} lets others read it; run chmod 600 on it",
            mode & 0o777
        )));
    }
    let token = text.trim().to_string();
    check_secret(&token).map_err(|e| unsafe_file(e.to_string()))?;
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn hosts_and_origins() {
        let a = AuthConfig::new(
            "0123456789abcdef",
            LOOPBACK_HOSTS.iter().map(|s| s.to_string()).collect(),
            vec![],
        )
        .unwrap();
        assert!(
            a.check_origin(&headers(&[("host", "127.0.0.1:8420")]))
                .is_ok()
        );
        assert!(a.check_origin(&headers(&[("host", "localhost")])).is_ok());
        assert!(a.check_origin(&headers(&[("host", "[::1]:8420")])).is_ok());
        // DNS rebinding: the page's own name reaches us through its A record.
        assert!(
            a.check_origin(&headers(&[("host", "evil.example:8420")]))
                .is_err()
        );
        assert!(a.check_origin(&headers(&[])).is_err());
        let same = [
            ("host", "127.0.0.1:8420"),
            ("origin", "http://127.0.0.1:8420"),
        ];
        assert!(a.check_origin(&headers(&same)).is_ok());
        let cross = [
            ("host", "127.0.0.1:8420"),
            ("origin", "http://evil.example"),
        ];
        assert!(a.check_origin(&headers(&cross)).is_err());
        let null = [("host", "127.0.0.1:8420"), ("origin", "null")];
        assert!(a.check_origin(&headers(&null)).is_err());
        let fetch = [("host", "127.0.0.1:8420"), ("sec-fetch-site", "cross-site")];
        assert!(a.check_origin(&headers(&fetch)).is_err());
        assert!(AuthConfig::new("", vec![], vec![]).is_err());
    }

    #[test]
    fn roles_by_route() {
        assert_eq!(required_role(&Method::GET, "/api/events"), Role::Viewer);
        assert_eq!(required_role(&Method::POST, "/api/events"), Role::Operator);
        assert_eq!(required_role(&Method::GET, "/api/tokens"), Role::Admin);
        assert_eq!(required_role(&Method::DELETE, "/api/tokens/x"), Role::Admin);
        assert_eq!(
            required_role(&Method::PATCH, "/api/models/m"),
            Role::Operator
        );
    }

    #[test]
    fn token_file_is_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let t1 = load_or_create_token(dir.path()).unwrap();
        let mode = std::fs::metadata(token_file(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_token(dir.path()).unwrap(), t1);
        std::fs::set_permissions(
            token_file(dir.path()),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let e = load_or_create_token(dir.path()).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
