//! The one-click links of confirm mode and of a held shed: signing and verifying them with
//! HMAC-SHA256 over the text of their purpose (the grammar is the contract's,
//! `grayguard_contract::operator`).

use grayguard_contract::Trigger;
use grayguard_contract::operator::{Link, Purpose};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The signature does not match (another secret, or an edited link).
    Signature,
    /// The link is past its expiry.
    Expired,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Signature => "bad signature",
            Refusal::Expired => "expired link",
        }
    }
}

fn mac(secret: &[u8], purpose: Purpose, rule: &str, trigger: Trigger, exp: u64) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
    m.update(Link::message(purpose, rule, trigger, exp).as_bytes());
    m
}

/// A signed link for `purpose` on `rule` (its alert on `trigger`, or its hold on
/// `trigger`), valid until `exp` (seconds).
pub fn sign(secret: &[u8], purpose: Purpose, rule: &str, trigger: Trigger, exp: u64) -> Link {
    let tag = mac(secret, purpose, rule, trigger, exp)
        .finalize()
        .into_bytes();
    let sig = tag.iter().map(|b| format!("{b:02x}")).collect();
    Link {
        rule: rule.to_string(),
        trigger,
        exp,
        sig,
    }
}

/// Checks a link's signature for `purpose` (in constant time) and its expiry at `now_s`.
pub fn verify(secret: &[u8], purpose: Purpose, link: &Link, now_s: u64) -> Result<(), Refusal> {
    let mut tag = [0u8; 32];
    for (i, byte) in tag.iter_mut().enumerate() {
        *byte = link
            .sig
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or(Refusal::Signature)?;
    }
    mac(secret, purpose, &link.rule, link.trigger, link.exp)
        .verify_slice(&tag)
        .map_err(|_| Refusal::Signature)?;
    if now_s > link.exp {
        return Err(Refusal::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef-secret";

    const ALERT: Purpose = Purpose::Alert;

    #[test]
    fn signed_links_verify_until_they_expire() {
        let l = sign(KEY, ALERT, "crane-cameras", Trigger::BoxCount, 1_000);
        assert_eq!(l.sig.len(), 64);
        assert_eq!(Link::parse(&l.query()), Ok(l.clone()));
        assert_eq!(verify(KEY, ALERT, &l, 999), Ok(()));
        assert_eq!(verify(KEY, ALERT, &l, 1_000), Ok(()));
        assert_eq!(verify(KEY, ALERT, &l, 1_001), Err(Refusal::Expired));
    }

    #[test]
    fn a_signature_verifies_for_its_own_purpose_only() {
        let alert = sign(KEY, ALERT, "crane-cameras", Trigger::BoxCount, 1_000);
        let release = sign(
            KEY,
            Purpose::Release,
            "crane-cameras",
            Trigger::BoxCount,
            1_000,
        );
        assert_eq!(alert.query().len(), release.query().len());
        assert_ne!(alert.sig, release.sig);
        assert_eq!(verify(KEY, Purpose::Release, &release, 0), Ok(()));
        assert_eq!(
            verify(KEY, Purpose::Release, &alert, 0),
            Err(Refusal::Signature),
            "an alert's link cannot release"
        );
        assert_eq!(
            verify(KEY, ALERT, &release, 0),
            Err(Refusal::Signature),
            "a release link cannot confirm"
        );
    }

    #[test]
    fn any_change_or_another_key_breaks_the_signature() {
        let l = sign(KEY, ALERT, "crane-cameras", Trigger::BoxCount, 1_000);
        let other_rule = Link {
            rule: "gates".into(),
            ..l.clone()
        };
        let later = Link {
            exp: 2_000,
            ..l.clone()
        };
        let other_trigger = Link {
            trigger: Trigger::Latency,
            ..l.clone()
        };
        for bad in [other_rule, later, other_trigger] {
            assert_eq!(
                verify(KEY, ALERT, &bad, 0),
                Err(Refusal::Signature),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify(b"another-secret-key", ALERT, &l, 0),
            Err(Refusal::Signature)
        );
        let mut flipped = l.clone();
        flipped
            .sig
            .replace_range(0..1, if l.sig.starts_with('0') { "1" } else { "0" });
        assert_eq!(verify(KEY, ALERT, &flipped, 0), Err(Refusal::Signature));
    }

    /// The signature is HMAC-SHA256 of the contract's message, so any tool can make one:
    /// RFC 4231 test case 2 through the same code path.
    #[test]
    fn the_mac_is_standard_hmac_sha256() {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        let hex: String = m
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
