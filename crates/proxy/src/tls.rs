//! HTTPS for every worktree's name: a certificate authority of the user's own, made once and
//! kept under pwt's state directory (its key readable by the user alone), that signs a
//! certificate for each name a browser asks for (`localhost`, `<slug>.localhost`) in memory
//! as it is first asked. The authority is name-constrained to `localhost` and the loopback
//! addresses: trusted by a browser, it can vouch for nothing else, even if its key leaked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::server::ProxyError;

/// The certificate's file in the authority's directory.
pub const CA_CERT: &str = "pwt-ca.pem";
/// Its key's file (mode 0600).
const CA_KEY: &str = "pwt-ca-key.pem";
/// The authority's name, as browsers and certificate stores show it.
pub const CA_NAME: &str = "pwt local CA";

/// The user's authority: its certificate and the key that signs.
pub struct LocalCa {
    dir: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What the authority is: its name, what it may sign, what it may vouch for.
fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p.distinguished_name
        .push(DnType::OrganizationName, "pwt (this machine only)");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![
            GeneralSubtree::DnsName("localhost".into()),
            GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix([127, 0, 0, 0], 8)),
            GeneralSubtree::IpAddress(CidrSubnet::from_v6_prefix(
                std::net::Ipv6Addr::LOCALHOST.octets(),
                128,
            )),
        ],
        excluded_subtrees: Vec::new(),
    });
    p
}

impl LocalCa {
    /// The authority in `dir`, made there (mode 0700, key 0600) when there is none. A key
    /// others may read is refused: whoever holds it could vouch for `localhost`.
    pub fn load_or_create(dir: &Path) -> Result<Self, ProxyError> {
        let fail = |what: String, e: std::io::Error| ProxyError::Tls(format!("{what}: {e}"));
        let (cert_file, key_file) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if !key_file.exists() && !cert_file.exists() {
            create_private_dir(dir)
                .map_err(|e| fail(format!("cannot make {}", dir.display()), e))?;
            create(&key_file, &cert_file)?;
        }
        // Another pwt making it right now: its certificate follows its key within moments.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while key_file.exists() != cert_file.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if key_file.exists() != cert_file.exists() {
            return Err(ProxyError::Tls(format!(
                "{} holds a {} without its {}: pwt never replaces an authority browsers may trust; delete the directory to make a new one, then `pwt proxy trust` again",
                dir.display(),
                if key_file.exists() {
                    "key"
                } else {
                    "certificate"
                },
                if key_file.exists() {
                    "certificate"
                } else {
                    "key"
                },
            )));
        }
        check_private(dir, &key_file)?;
        let key_pem = std::fs::read_to_string(&key_file)
            .map_err(|e| fail(format!("cannot read {}", key_file.display()), e))?;
        let cert_pem = std::fs::read_to_string(&cert_file)
            .map_err(|e| fail(format!("cannot read {}", cert_file.display()), e))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| ProxyError::Tls(format!("{}: {e}", key_file.display())))?;
        let cert_der = pem_der(&cert_pem).ok_or_else(|| {
            ProxyError::Tls(format!("{} holds no certificate", cert_file.display()))
        })?;
        check_authority(&cert_der, &key, &cert_file)?;
        Ok(Self {
            dir: dir.to_owned(),
            cert_pem,
            cert_der,
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// Where its certificate is, to trust it.
    pub fn cert_file(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// Its certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Its certificate, DER (for a fingerprint).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A certificate for `name` (`localhost`, `<slug>.localhost`; `localhost`'s also names
    /// the loopback addresses), with a key of its own, ready for rustls.
    fn issue(&self, name: &str) -> Result<CertifiedKey, ProxyError> {
        let tls = |e: rcgen::Error| ProxyError::Tls(e.to_string());
        let key = KeyPair::generate().map_err(tls)?;
        let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(tls)?;
        if name == "localhost" {
            for ip in [
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ] {
                params.subject_alt_names.push(SanType::IpAddress(ip));
            }
        }
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        (params.not_before, params.not_after) = validity(90);
        let cert = params.signed_by(&key, &self.issuer).map_err(tls)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| ProxyError::Tls(e.to_string()))?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.cert_der.clone()],
            signing,
        ))
    }

    /// The TLS configuration of `pwt proxy`: certificates issued as names are asked for,
    /// HTTP/2 and HTTP/1.1 offered (ALPN).
    pub fn server_config(self: Arc<Self>) -> Result<Arc<rustls::ServerConfig>, ProxyError> {
        // ring: no C toolchain beyond its own, no post-quantum key exchange, which a
        // connection that never leaves the machine does not need.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ProxyError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver {
                ca: self,
                issued: Mutex::new(HashMap::new()),
            }));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Issues and keeps a certificate per name asked for.
struct Resolver {
    ca: Arc<LocalCa>,
    issued: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// At most this many names get a certificate (one per worktree and `localhost`).
const MAX_ISSUED: usize = 4096;

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No name (an address, `https://127.0.0.1:…`): localhost's, which names them.
        let name = hello
            .server_name()
            .map_or_else(|| "localhost".to_owned(), str::to_ascii_lowercase);
        if !serves(&name) {
            return None;
        }
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = issued.get(&name) {
            return Some(c.clone());
        }
        if issued.len() >= MAX_ISSUED {
            issued.clear();
        }
        let cert = Arc::new(self.ca.issue(&name).ok()?);
        issued.insert(name, cert.clone());
        Some(cert)
    }
}

/// Makes a new authority: the key first (created exclusively: of two pwt making one at once,
/// one makes it), then its certificate, written whole under a temporary name and renamed.
fn create(key_file: &Path, cert_file: &Path) -> Result<(), ProxyError> {
    let tls = |e: rcgen::Error| ProxyError::Tls(e.to_string());
    let key = KeyPair::generate().map_err(tls)?;
    let mut params = ca_params();
    (params.not_before, params.not_after) = validity(3650);
    let cert = params.self_signed(&key).map_err(tls)?;
    match write_private(key_file, key.serialize_pem().as_bytes()) {
        Ok(()) => {}
        // Another pwt is making it: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => {
            return Err(ProxyError::Tls(format!(
                "cannot write {}: {e}",
                key_file.display()
            )));
        }
    }
    let temp = cert_file.with_extension("pem.tmp");
    std::fs::write(&temp, cert.pem())
        .and_then(|()| std::fs::rename(&temp, cert_file))
        .map_err(|e| ProxyError::Tls(format!("cannot write {}: {e}", cert_file.display())))
}

/// The certificate is the authority pwt makes, for this key: it carries the key's public
/// half and the name constraints (so a file put there by someone else, or a key that does
/// not match, is refused before any browser is told to trust it).
fn check_authority(cert: &[u8], key: &KeyPair, file: &Path) -> Result<(), ProxyError> {
    let contains = |needle: &[u8]| cert.windows(needle.len()).any(|w| w == needle);
    // id-ce-nameConstraints (2.5.29.30) and id-ce-basicConstraints (2.5.29.19).
    let (name_constraints, basic_constraints) = (
        [0x06, 0x03, 0x55, 0x1d, 0x1e],
        [0x06, 0x03, 0x55, 0x1d, 0x13],
    );
    let refuse = |why: &str| {
        Err(ProxyError::Tls(format!(
            "{} is not the authority pwt made: {why}; delete its directory to make a new one, then `pwt proxy trust` again",
            file.display()
        )))
    };
    if !contains(key.public_key_raw()) {
        return refuse("its key is not the key beside it");
    }
    if !contains(&name_constraints) || !contains(&basic_constraints) {
        return refuse("it is not constrained to localhost names");
    }
    Ok(())
}

/// The names the proxy has certificates for: `localhost` and one label under it, in the
/// characters a slug has.
fn serves(name: &str) -> bool {
    if name == "localhost" {
        return true;
    }
    name.strip_suffix(".localhost").is_some_and(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

/// From a day ago to `days` days ahead.
fn validity(days: i64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (
        now - time::Duration::days(1),
        now + time::Duration::days(days),
    )
}

fn pem_der(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Refuses a key others may read, in a directory others may write.
fn check_private(dir: &Path, file: &Path) -> Result<(), ProxyError> {
    use std::os::unix::fs::MetadataExt as _;
    let d =
        std::fs::metadata(dir).map_err(|e| ProxyError::Tls(format!("{}: {e}", dir.display())))?;
    if d.mode() & 0o022 != 0 {
        return Err(ProxyError::Tls(format!(
            "{} can be written by others (mode {:o}): whoever writes there can replace the authority browsers trust; `chmod 700` it",
            dir.display(),
            d.mode() & 0o777
        )));
    }
    let md =
        std::fs::metadata(file).map_err(|e| ProxyError::Tls(format!("{}: {e}", file.display())))?;
    if md.mode() & 0o077 != 0 {
        return Err(ProxyError::Tls(format!(
            "{} can be read by others (mode {:o}): whoever reads it can pose as any localhost site to a browser trusting it; `chmod 600` it, or delete the directory and `pwt proxy trust` again",
            file.display(),
            md.mode() & 0o777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_served_are_localhost_and_one_slug_label() {
        for ok in ["localhost", "feat-a.localhost", "a1.localhost"] {
            assert!(serves(ok), "{ok}");
        }
        for no in [
            "example.com",
            "localhost.example.com",
            "a.b.localhost",
            ".localhost",
            "-a.localhost",
            "pwt local ca.localhost",
            "x_y.localhost",
            "localhost.",
        ] {
            assert!(!serves(no), "{no}");
        }
    }

    #[test]
    fn the_authority_is_made_once_private_and_refused_when_readable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_dir = dir.path().join("ca");
        let first = LocalCa::load_or_create(&ca_dir).expect("made");
        let again = LocalCa::load_or_create(&ca_dir).expect("loaded");
        assert_eq!(first.cert_pem(), again.cert_pem(), "made once");
        let mode = |p: &Path| std::fs::metadata(p).expect("md").permissions().mode() & 0o777;
        assert_eq!(mode(&ca_dir), 0o700);
        assert_eq!(mode(&ca_dir.join(CA_KEY)), 0o600);
        let cert = again.issue("feat-a.localhost").expect("issued");
        assert_eq!(cert.cert.len(), 2, "leaf and authority");
        std::fs::set_permissions(ca_dir.join(CA_KEY), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let e = LocalCa::load_or_create(&ca_dir).expect_err("readable key refused");
        assert!(e.to_string().contains("can be read by others"), "{e}");
    }

    #[test]
    fn a_half_authority_or_someone_elses_is_refused_never_replaced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_dir = dir.path().join("ca");
        let first = LocalCa::load_or_create(&ca_dir).expect("made");
        // The key gone: refused, the certificate browsers trust left as it is.
        let key = std::fs::read(ca_dir.join(CA_KEY)).expect("key");
        std::fs::remove_file(ca_dir.join(CA_KEY)).expect("rm");
        let e = LocalCa::load_or_create(&ca_dir).expect_err("refused");
        assert!(e.to_string().contains("without its key"), "{e}");
        assert_eq!(
            std::fs::read_to_string(ca_dir.join(CA_CERT)).expect("cert"),
            first.cert_pem()
        );
        write_private(&ca_dir.join(CA_KEY), &key).expect("key back");
        // Someone else's certificate (no name constraints, another key).
        let other_key = KeyPair::generate().expect("key");
        let mut other = CertificateParams::default();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other = other.self_signed(&other_key).expect("cert");
        std::fs::write(ca_dir.join(CA_CERT), other.pem()).expect("replace");
        let e = LocalCa::load_or_create(&ca_dir).expect_err("refused");
        assert!(e.to_string().contains("not the authority pwt made"), "{e}");
        std::fs::write(ca_dir.join(CA_CERT), first.cert_pem()).expect("back");
        // A directory others may write.
        std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = LocalCa::load_or_create(&ca_dir).expect_err("refused");
        assert!(e.to_string().contains("written by others"), "{e}");
        std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        LocalCa::load_or_create(&ca_dir).expect("whole again");
    }
}
