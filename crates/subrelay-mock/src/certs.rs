//! Certificates made at test time: a private certificate authority and leaf certificates it
//! signs, so TLS tests need no files, no network and nothing that expires in the repository.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority of one test run. Nothing trusts it unless told to (its
/// [`cert_pem`](Self::cert_pem) in `upstream.ca_file`, say).
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    /// The authority's own certificate, PEM.
    pub cert_pem: String,
}

/// A leaf certificate and its private key, both PEM, for [`crate::MockTls`].
#[derive(Clone, Debug)]
pub struct Leaf {
    /// The leaf certificate (the chain the server presents).
    pub cert_pem: String,
    /// Its private key (PKCS #8).
    pub key_pem: String,
}

impl TestCa {
    /// A new authority called `name` (its subject's common name).
    pub fn new(name: &str) -> Result<TestCa, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(TestCa {
            params,
            key,
            cert_pem,
        })
    }

    /// A server certificate for these DNS names (or IP addresses), valid from 1975 to 4096.
    pub fn leaf(&self, names: &[&str]) -> Result<Leaf, rcgen::Error> {
        self.sign(names, false)
    }

    /// A server certificate for these names that expired on 1 January 2000.
    pub fn expired_leaf(&self, names: &[&str]) -> Result<Leaf, rcgen::Error> {
        self.sign(names, true)
    }

    fn sign(&self, names: &[&str], expired: bool) -> Result<Leaf, rcgen::Error> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(1999, 1, 1);
            params.not_after = rcgen::date_time_ymd(2000, 1, 1);
        }
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
