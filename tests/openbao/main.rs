//! `VaultKeySource` against a real OpenBao dev server (`tests/support/openbao.rs`).
//!
//! Ignored by default, so `cargo test --all-features` passes on a machine without OpenBao.
//! CI runs them (`.ci/run`); locally:
//!
//! ```text
//! BAO_BIN="$(.ci/install-openbao)" cargo test --all-features --test openbao -- --ignored
//! ```
//!
//! One shared server per test binary for the tests that make their own mounts, policies and
//! roles; a test that seals, kills or rate-limits its server starts its own.
//!
//! | module | what |
//! |---|---|
//! | `reads` | KV v1 and v2, a least-privilege token, a rotation healed through one 401, errors |
//! | `namespaces` | a namespace's KV, AppRole (login, re-login after revocation) and token |
//! | `logins` | AppRole: no login per denied read, no lockout, a new login after revocation |
//! | `versions` | soft-deleted and destroyed versions, renew-self of a short-lived token |
//! | `token_file` | a Vault Agent's token file: rotated, revoked, refused |
//! | `faults` | sealed and unsealed, killed and restarted on the same port |
//! | `rate_limit` | a rate-limit quota: Retry-After honoured, no read storm under a 401 storm |
//! | `fleet` | N independent instances against one server: rotation, refresh-ahead, a rate-limited store |

#[path = "../support/openbao.rs"]
mod openbao;
#[path = "../support/mod.rs"]
mod support;

mod common;
mod faults;
mod fleet;
mod harness;
mod logins;
mod namespaces;
mod rate_limit;
mod reads;
mod token_file;
mod versions;
