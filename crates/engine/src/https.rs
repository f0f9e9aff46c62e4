//! HTTPS for `pwt proxy`: where this user's local certificate authority lives (under the
//! state directory), and trusting it where browsers and tools on this machine look for
//! authorities: the NSS database Chromium and Chrome read (`~/.pki/nssdb`), each Firefox
//! profile's, and the system store (`/usr/local/share/ca-certificates`, for curl, Python,
//! Node with `--use-system-ca`, …; only root can change it, so others are told the command).
//! NSS is changed with `certutil` (Debian's libnss3-tools).

use std::path::{Path, PathBuf};
use std::process::Command;

use pwt_proxy::{CA_NAME, LocalCa};

use crate::error::{Error, ErrorKind, Result};

/// The directory of the authority under a state directory.
pub fn ca_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ca")
}

/// The authority of the user whose state directory this is, made on first use.
pub fn local_ca(state_dir: &Path) -> Result<LocalCa> {
    LocalCa::load_or_create(&ca_dir(state_dir))
        .map_err(|e| Error::new(ErrorKind::Config, e.to_string()))
}

/// One place the authority can be trusted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TrustStore {
    /// `nss` (Chromium, Chrome), `firefox` (a profile), `system`.
    pub kind: String,
    /// The database or directory.
    pub location: String,
    /// The authority is trusted there (after the change, for `trust`).
    pub trusted: bool,
    /// What went wrong, or what to do (a command to run as root).
    pub note: Option<String>,
}

/// Where `home`'s browsers look: the shared NSS database (made when missing, for `install`)
/// and each Firefox profile.
fn nss_databases(home: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut out = vec![("nss", home.join(".pki/nssdb"))];
    let firefox = home.join(".mozilla/firefox");
    if let Ok(entries) = std::fs::read_dir(firefox) {
        let mut profiles: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("cert9.db").is_file())
            .collect();
        profiles.sort();
        out.extend(profiles.into_iter().map(|p| ("firefox", p)));
    }
    out
}

/// The system store's file for this authority (Debian's layout).
const SYSTEM_DIR: &str = "/usr/local/share/ca-certificates";

fn system_file() -> PathBuf {
    Path::new(SYSTEM_DIR).join(format!("pwt-local-ca-{}.crt", pwt_alloc::proc::uid()))
}

fn certutil(args: &[&std::ffi::OsStr]) -> std::result::Result<String, String> {
    match Command::new("certutil").args(args).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("certutil is not installed (Debian: apt install libnss3-tools)".into())
        }
        Err(e) => Err(format!("cannot run certutil: {e}")),
    }
}

fn db_arg(db: &Path) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from("sql:");
    s.push(db);
    s
}

/// This authority's nickname in an NSS database: its name and fingerprint, so the
/// authorities of two state directories sharing a database stay apart.
fn nickname(ca: &LocalCa) -> String {
    use sha2::Digest as _;
    let hash: String = sha2::Sha256::digest(ca.cert_der())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{CA_NAME} {hash}")
}

/// The certificates of `db` by nickname, with their SSL trust flags (`C,,` → `C`).
fn nss_list(db: &Path) -> Vec<(String, String)> {
    let Ok(text) = certutil(&["-L".as_ref(), "-d".as_ref(), &db_arg(db)]) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let l = l.trim_end();
            let (name, flags) = l.rsplit_once(char::is_whitespace)?;
            let flags = flags.trim();
            flags.contains(',').then(|| {
                (
                    name.trim().to_owned(),
                    flags.split(',').next().unwrap_or("").to_owned(),
                )
            })
        })
        .collect()
}

/// The PEM `db` holds under `nick`.
fn nss_pem(db: &Path, nick: &str) -> Option<String> {
    certutil(&[
        "-L".as_ref(),
        "-d".as_ref(),
        &db_arg(db),
        "-n".as_ref(),
        nick.as_ref(),
        "-a".as_ref(),
    ])
    .ok()
}

fn same_pem(a: &str, b: &str) -> bool {
    let body = |s: &str| -> String { s.split_whitespace().collect() };
    body(a) == body(b)
}

/// The nicknames under which `db` holds this very certificate, with whether each is
/// trusted for servers (`C` in its SSL flags).
fn in_nss_as(db: &Path, ca: &LocalCa) -> Vec<(String, bool)> {
    if !db.join("cert9.db").is_file() {
        return Vec::new();
    }
    nss_list(db)
        .into_iter()
        .filter(|(nick, _)| nss_pem(db, nick).is_some_and(|p| same_pem(&p, ca.cert_pem())))
        .map(|(nick, ssl)| (nick, ssl.contains('C')))
        .collect()
}

/// Trusted for servers in `db`: the very certificate, with the `C` flag.
fn in_nss(db: &Path, ca: &LocalCa) -> bool {
    in_nss_as(db, ca).iter().any(|(_, trusted)| *trusted)
}

/// Where the authority is trusted now.
pub fn trusted_where(ca: &LocalCa, home: &Path) -> Vec<TrustStore> {
    let mut out: Vec<TrustStore> = nss_databases(home)
        .into_iter()
        .map(|(kind, db)| TrustStore {
            kind: kind.into(),
            trusted: in_nss(&db, ca),
            location: db.display().to_string(),
            note: None,
        })
        .collect();
    let system = system_file();
    out.push(TrustStore {
        kind: "system".into(),
        trusted: std::fs::read_to_string(&system).is_ok_and(|t| t == ca.cert_pem()),
        location: system.display().to_string(),
        note: None,
    });
    out
}

/// Trusts the authority (or, with `remove`, stops trusting it) in each store of `home`'s
/// browsers and, as root, the system's, of the kinds `only` names (`nss`, `firefox`,
/// `system`; empty: all); each store's outcome.
pub fn trust(ca: &LocalCa, home: &Path, remove: bool, only: &[String]) -> Vec<TrustStore> {
    let wanted = |kind: &str| only.is_empty() || only.iter().any(|k| k == kind);
    let mut out: Vec<TrustStore> = nss_databases(home)
        .into_iter()
        .filter(|(kind, _)| wanted(kind))
        .map(|(kind, db)| {
            let done = if remove {
                untrust_nss(&db, ca)
            } else {
                trust_nss(&db, ca)
            };
            TrustStore {
                kind: kind.into(),
                trusted: in_nss(&db, ca),
                location: db.display().to_string(),
                note: done.err(),
            }
        })
        .collect();
    if wanted("system") {
        out.push(system_store(ca, remove));
    }
    out
}

fn trust_nss(db: &Path, ca: &LocalCa) -> std::result::Result<(), String> {
    if !db.join("cert9.db").is_file() {
        std::fs::create_dir_all(db).map_err(|e| format!("cannot make {}: {e}", db.display()))?;
        certutil(&[
            "-N".as_ref(),
            "-d".as_ref(),
            &db_arg(db),
            "--empty-password".as_ref(),
        ])?;
    }
    // Already there under another name, or without the trust flag: put right.
    untrust_nss(db, ca)?;
    certutil(&[
        "-A".as_ref(),
        "-d".as_ref(),
        &db_arg(db),
        "-t".as_ref(),
        "C,,".as_ref(),
        "-n".as_ref(),
        nickname(ca).as_ref(),
        "-i".as_ref(),
        ca.cert_file().as_os_str(),
    ])
    .map(|_| ())
}

/// Removes this very certificate from `db`, under whatever nickname it is there.
fn untrust_nss(db: &Path, ca: &LocalCa) -> std::result::Result<(), String> {
    for (nick, _) in in_nss_as(db, ca) {
        certutil(&[
            "-D".as_ref(),
            "-d".as_ref(),
            &db_arg(db),
            "-n".as_ref(),
            nick.as_ref(),
        ])?;
    }
    Ok(())
}

fn system_store(ca: &LocalCa, remove: bool) -> TrustStore {
    let file = system_file();
    let root = pwt_alloc::proc::uid() == 0;
    let mut store = TrustStore {
        kind: "system".into(),
        location: file.display().to_string(),
        trusted: std::fs::read_to_string(&file).is_ok_and(|t| t == ca.cert_pem()),
        note: None,
    };
    if !Path::new(SYSTEM_DIR).is_dir() {
        store.note = Some(format!("{SYSTEM_DIR} does not exist on this system"));
        return store;
    }
    if !root {
        store.note = Some(if remove {
            format!(
                "as root: rm {} && update-ca-certificates --fresh",
                file.display()
            )
        } else {
            format!(
                "as root: cp {} {} && update-ca-certificates",
                ca.cert_file().display(),
                file.display()
            )
        });
        return store;
    }
    let changed = if remove {
        std::fs::remove_file(&file).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        })
    } else {
        std::fs::write(&file, ca.cert_pem())
    };
    let update = changed.map_err(|e| e.to_string()).and_then(|()| {
        let mut cmd = Command::new("update-ca-certificates");
        if remove {
            cmd.arg("--fresh");
        }
        match cmd.output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
            Err(e) => Err(format!("cannot run update-ca-certificates: {e}")),
        }
    });
    store.trusted = std::fs::read_to_string(&file).is_ok_and(|t| t == ca.cert_pem());
    store.note = update.err();
    store
}
