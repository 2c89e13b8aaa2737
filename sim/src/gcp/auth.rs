//! Google auth as GCE sees it: the service-account key the simulator issues
//! at start (a JSON key file like Google's, RSA 2048 made by the `openssl`
//! CLI, as ring cannot generate RSA keys), and the two ways a client
//! presents it:
//!
//! - a self-signed JWT as the bearer token (AIP-4111,
//!   https://google.aip.dev/auth/4111): RS256, header `kid` = the key's
//!   `private_key_id`, `iss` = `sub` = `client_email`, `aud` the API's
//!   `https://compute.googleapis.com/` or (google-auth's
//!   `always_use_jwt_access` with scopes) a `scope` claim, `exp` at most
//!   3600 s after `iat`, plus the clock-skew allowance Google's own clients
//!   rely on (google-cloud-rust's google-cloud-auth 1.19 signs
//!   `iat` = now - 10 s and `exp` = now + 3610 s, 3620 s apart, and
//!   Google accepts it; the allowance here is 60 s, as for a future `iat`);
//! - the OAuth 2.0 JWT-bearer grant (RFC 7523; Google's "Using OAuth 2.0 for
//!   server to server applications"): `POST token_uri` with
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`
//!   (`aud` = `token_uri`, a `scope` claim) answers an access token.

/// How far `iat`/`exp` may stray from the rules for clock skew (see the
/// module note).
const CLOCK_SKEW_ALLOWANCE: i64 = 60;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair, RsaKeyPair, UnparsedPublicKey};
use serde_json::{json, Value};

use crate::core::util::{random_secret, unix_now};

/// Scopes a token may carry for Compute (the compute.v1 discovery
/// document's `auth.oauth2.scopes`, read-only ones aside).
pub const SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/compute",
];

/// The audience a self-signed JWT names for Compute (AIP-4111: "The default
/// audience value should be `https://[API_ENDPOINT]/`").
pub const AUDIENCE: &str = "https://compute.googleapis.com/";

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub struct ServiceAccount {
    pub key_id: String,
    pub client_email: String,
    pub client_id: String,
    /// PKCS#8 PEM, as in Google's key files.
    pub private_key_pem: String,
    /// RSAPublicKey DER (what ring's RSA verification takes).
    public_key: Vec<u8>,
}

impl ServiceAccount {
    /// A fresh RSA 2048 key from `openssl genpkey` (PKCS#8 PEM).
    pub fn generate(project: &str, dir: &Path) -> Result<ServiceAccount> {
        let tmp = dir.join(format!("sa-key-{}.pem", &random_secret()[..8]));
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&tmp)
            .output()
            .context("running openssl genpkey (the openssl CLI issues the service-account key)")?;
        if !out.status.success() {
            bail!(
                "openssl genpkey failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let pem = std::fs::read_to_string(&tmp).context("reading the new key")?;
        let _ = std::fs::remove_file(&tmp);
        let der = pem_der(&pem)?;
        let pair = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| anyhow::anyhow!("ring cannot read the key: {e}"))?;
        let hex: String = random_secret().replace('-', "") + &random_secret().replace('-', "")[..8];
        let digits: String = random_secret()
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|b| char::from(b'0' + (b % 10)))
            .take(21)
            .collect();
        Ok(ServiceAccount {
            key_id: hex,
            client_email: format!("golden-sim@{project}.iam.gserviceaccount.com"),
            client_id: format!("1{}", &digits[..20]),
            private_key_pem: pem,
            public_key: pair.public_key().as_ref().to_vec(),
        })
    }

    /// The key file, Google's service-account JSON shape (AIP-4112 and
    /// `gcloud iam service-accounts keys create`), `token_uri` pointing here.
    pub fn key_file(&self, project: &str, token_uri: &str) -> Value {
        json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": self.key_id,
            "private_key": self.private_key_pem,
            "client_email": self.client_email,
            "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                self.client_email.replace('@', "%40")
            ),
            "universe_domain": "googleapis.com",
        })
    }

    /// Verifies a JWT's signature and reads its header and claims.
    pub fn verify(&self, jwt: &str) -> Result<(Value, Value), String> {
        let parts: Vec<&str> = jwt.split('.').collect();
        let [h, p, s] = parts.as_slice() else {
            return Err("not a JWT".into());
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let decode = |x: &str| b64.decode(x.trim_end_matches('='));
        let header: Value = decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("bad JWT header")?;
        let claims: Value = decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("bad JWT claims")?;
        let sig = decode(s).map_err(|_| "bad JWT signature encoding")?;
        if header["alg"] != "RS256" {
            return Err(format!("alg {} is not RS256", header["alg"]));
        }
        let key = UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.public_key);
        key.verify(format!("{h}.{p}").as_bytes(), &sig)
            .map_err(|_| "Invalid JWT Signature.".to_owned())?;
        Ok((header, claims))
    }

    /// A self-signed JWT used as a bearer token: `Ok` or why not.
    pub fn check_self_signed(&self, jwt: &str, endpoint: &str) -> Result<(), String> {
        let (header, claims) = self.verify(jwt)?;
        if header["kid"].as_str() != Some(&self.key_id) {
            return Err(format!("kid {} is not this account's key", header["kid"]));
        }
        if claims["iss"].as_str() != Some(&self.client_email)
            || claims["sub"].as_str() != Some(&self.client_email)
        {
            return Err("iss and sub must both be the service account's email".into());
        }
        lifetime(&claims)?;
        let aud_ok = match &claims["aud"] {
            Value::String(a) => audience_ok(a, endpoint),
            Value::Array(a) => a
                .iter()
                .any(|a| a.as_str().is_some_and(|a| audience_ok(a, endpoint))),
            _ => false,
        };
        if !aud_ok && !scope_ok(&claims) {
            return Err(
                "neither an audience for Compute nor a cloud-platform/compute scope".into(),
            );
        }
        Ok(())
    }

    /// The token endpoint's assertion: `Ok` or Google's OAuth error
    /// (`error`, `error_description`).
    pub fn check_assertion(
        &self,
        jwt: &str,
        token_uri: &str,
    ) -> Result<(), (&'static str, String)> {
        let (_, claims) = self.verify(jwt).map_err(|e| ("invalid_grant", e))?;
        if claims["iss"].as_str() != Some(&self.client_email) {
            return Err(("invalid_grant", "Invalid grant: account not found".into()));
        }
        // Google's token endpoint wants `aud` = its own address: "When making
        // an access token request this value is always
        // https://oauth2.googleapis.com/token" (Google, "Using OAuth 2.0 for
        // Server to Server Applications", the JWT claim set). google-auth
        // (Python) puts that constant there whatever the key file's
        // `token_uri` says (`service_account._make_authorization_grant_assertion`),
        // so only it is Google's answer; a client that names the key file's
        // `token_uri` instead (as golang.org/x/oauth2/jwt does) would send the
        // same string to Google, where `token_uri` is that address: so both.
        let aud = claims["aud"].as_str();
        if aud != Some(GOOGLE_TOKEN_URI) && aud != Some(token_uri) {
            return Err((
                "invalid_grant",
                "Invalid JWT: Failed audience check.".into(),
            ));
        }
        lifetime(&claims).map_err(|_| {
            ("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.".to_owned())
        })?;
        if !scope_ok(&claims) {
            return Err((
                "invalid_scope",
                "Invalid OAuth scope or ID token audience provided.".into(),
            ));
        }
        Ok(())
    }

    /// Signs claims as the account (the simulator's own tests).
    #[cfg(test)]
    pub fn sign(&self, claims: &Value) -> String {
        let der = pem_der(&self.private_key_pem).unwrap();
        let pair = RsaKeyPair::from_pkcs8(&der).unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.key_id});
        let msg = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            msg.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{msg}.{}", b64.encode(sig))
    }
}

/// A new opaque access token and its lifetime (Google's are `ya29.` tokens
/// valid 3599 s).
pub fn new_access_token() -> (String, Instant) {
    let _ = SystemRandom::new();
    let t = format!(
        "ya29.c.{}{}",
        random_secret().replace('-', ""),
        random_secret().replace('-', "")
    );
    (t, Instant::now() + Duration::from_secs(3599))
}

/// Google's OAuth 2.0 token endpoint, the `aud` of every access-token
/// assertion (see `check_assertion`).
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

fn audience_ok(aud: &str, endpoint: &str) -> bool {
    let aud = aud.trim_end_matches('/');
    aud == AUDIENCE.trim_end_matches('/') || aud == endpoint.trim_end_matches('/')
}

fn scope_ok(claims: &Value) -> bool {
    claims["scope"]
        .as_str()
        .is_some_and(|s| s.split_whitespace().any(|s| SCOPES.contains(&s)))
}

/// `exp` in the future, `iat` not in the future (60 s of skew), at most an
/// hour between them.
fn lifetime(claims: &Value) -> Result<(), String> {
    let now = unix_now() as i64;
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err("iat and exp are required".into());
    };
    if exp <= now {
        return Err("the JWT has expired".into());
    }
    if iat > now + CLOCK_SKEW_ALLOWANCE {
        return Err("iat is in the future".into());
    }
    if exp - iat > 3600 + CLOCK_SKEW_ALLOWANCE {
        return Err("exp is more than 3600 s after iat".into());
    }
    Ok(())
}

fn pem_der(pem: &str) -> Result<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    if !pem.contains("BEGIN PRIVATE KEY") {
        bail!("not a PKCS#8 PEM private key");
    }
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .context("bad base64 in the PEM")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_jwts_are_checked() {
        let dir = std::env::temp_dir();
        let sa = ServiceAccount::generate("p", &dir).unwrap();
        let now = unix_now() as i64;
        let good = json!({"iss": sa.client_email, "sub": sa.client_email, "aud": AUDIENCE, "iat": now, "exp": now + 3600});
        assert_eq!(sa.check_self_signed(&sa.sign(&good), "http://x"), Ok(()));
        let mut scoped = good.clone();
        scoped.as_object_mut().unwrap().remove("aud");
        scoped["scope"] = json!(SCOPES[0]);
        assert_eq!(sa.check_self_signed(&sa.sign(&scoped), "http://x"), Ok(()));
        let mut expired = good.clone();
        expired["iat"] = json!(now - 4000);
        expired["exp"] = json!(now - 400);
        assert!(sa
            .check_self_signed(&sa.sign(&expired), "http://x")
            .is_err());
        let mut long = good.clone();
        long["exp"] = json!(now + 7200);
        assert!(sa.check_self_signed(&sa.sign(&long), "http://x").is_err());
        let other = ServiceAccount::generate("p", &dir).unwrap();
        let forged = other.sign(&good);
        assert!(sa.check_self_signed(&forged, "http://x").is_err());
        let mut tampered = sa.sign(&good);
        tampered.push('A');
        assert!(sa.check_self_signed(&tampered, "http://x").is_err());
    }

    #[test]
    fn assertions_name_googles_token_endpoint_or_the_token_uri() {
        let dir = std::env::temp_dir();
        let sa = ServiceAccount::generate("p", &dir).unwrap();
        let now = unix_now() as i64;
        let token_uri = "http://127.0.0.1:1/token";
        let with_aud = |aud: &str| {
            sa.sign(
                &json!({"iss": sa.client_email, "aud": aud, "scope": SCOPES[0],
                "iat": now, "exp": now + 3600}),
            )
        };
        // google-auth (Python) always names Google's endpoint.
        assert_eq!(
            sa.check_assertion(&with_aud(GOOGLE_TOKEN_URI), token_uri),
            Ok(())
        );
        assert_eq!(sa.check_assertion(&with_aud(token_uri), token_uri), Ok(()));
        let other = sa.check_assertion(&with_aud("https://compute.googleapis.com/"), token_uri);
        assert_eq!(
            other,
            Err((
                "invalid_grant",
                "Invalid JWT: Failed audience check.".to_owned()
            ))
        );
    }
}
