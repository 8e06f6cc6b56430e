//! The roots the client trusts.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// The roots to trust: the certificates of `ca_cert` alone when given (as the Vault CLI does
/// with `VAULT_CACERT`), else the webpki roots.
pub(crate) fn root_store(ca_cert: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    match ca_cert {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            add_pem_certs(&mut roots, path)?;
            Ok(roots)
        }
        None => Ok(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
    }
}

fn add_pem_certs(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| format!("CA certificate file {shown}: {e}"))?;
    let mut count = 0;
    for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
        let cert = cert.map_err(|e| format!("CA certificate file {shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate file {shown}: {e}"))?;
        count += 1;
    }
    if count == 0 {
        return Err(format!(
            "CA certificate file {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(())
}
