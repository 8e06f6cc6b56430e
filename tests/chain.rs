//! `KeySourceChain`: falls through on `Missing` only, stops at any other error, lists every
//! link when all are missing, and names the link that answered.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tower_bearer::{
    ApiKey, KeyError, KeyErrorKind, KeyFuture, KeySource, KeySourceChain, StaticKey,
};

/// A link that answers `answer` and counts its loads.
struct Link {
    name: Option<&'static str>,
    answer: Result<&'static str, (KeyErrorKind, Option<&'static str>)>,
    loads: AtomicUsize,
}

fn link(
    name: Option<&'static str>,
    answer: Result<&'static str, (KeyErrorKind, Option<&'static str>)>,
) -> Arc<Link> {
    Arc::new(Link {
        name,
        answer,
        loads: AtomicUsize::new(0),
    })
}

fn missing(name: &'static str) -> Arc<Link> {
    link(Some(name), Err((KeyErrorKind::Missing, Some(name))))
}

impl KeySource for Link {
    fn load(&self) -> KeyFuture<'_> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let result = match self.answer {
            Ok(key) => Ok(ApiKey::new(key).unwrap()),
            Err((kind, origin)) => {
                let err = KeyError::new(kind, "has nothing for you");
                Err(match origin {
                    Some(origin) => err.with_origin(origin),
                    None => err,
                })
            }
        };
        Box::pin(async move { result })
    }

    fn describe(&self) -> Option<String> {
        self.name.map(str::to_owned)
    }
}

impl Link {
    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn missing_then_missing_then_found_gives_the_third_links_key() {
    let (a, b) = (missing("source a"), missing("source b"));
    let c = link(Some("source c"), Ok("sk-from-the-third-link-0001"));
    let chain = KeySourceChain::new(a.clone()).or(b.clone()).or(c.clone());
    assert_eq!(chain.len(), 3);
    assert_eq!(chain.answered_by(), None);

    let (dispatch, logs) = support::logs::capture();
    let key = {
        let _guard = tracing::dispatcher::set_default(&dispatch);
        // Other tests here hit the same log lines: one of them registering a line while this
        // subscriber is installed could leave its cached interest stale.
        tracing::callsite::rebuild_interest_cache();
        chain.load().await.unwrap()
    };
    assert_eq!(key.expose_secret(), "sk-from-the-third-link-0001");
    assert_eq!([a.loads(), b.loads(), c.loads()], [1, 1, 1]);
    assert_eq!(chain.answered_by().as_deref(), Some("source c"));
    let text = logs.text();
    assert!(
        text.contains("this link gave the key") && text.contains("source c"),
        "{text}"
    );
    assert!(!text.contains("the-third-link"), "{text}");
    assert_eq!(
        chain.describe().as_deref(),
        Some("key source chain (source a, else source b, else source c)")
    );
    assert!(format!("{chain:?}").contains("answered_by: Some(\"source c\")"));

    // A clone shares what answered; the next load starts from the first link again.
    let clone = chain.clone();
    clone.load().await.unwrap();
    assert_eq!([a.loads(), b.loads(), c.loads()], [2, 2, 2]);
    assert_eq!(chain.answered_by().as_deref(), Some("source c"));
}

#[tokio::test]
async fn any_other_error_stops_the_walk() {
    let a = missing("source a");
    let b = link(
        Some("source b"),
        Err((KeyErrorKind::Denied, Some("secret manager b"))),
    );
    let c = link(Some("source c"), Ok("sk-never-reached-00000001"));
    let chain = KeySourceChain::new(a.clone()).or(b.clone()).or(c.clone());
    let err = chain.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied);
    assert_eq!(err.to_string(), "secret manager b: has nothing for you");
    assert_eq!([a.loads(), b.loads(), c.loads()], [1, 1, 0]);
    assert_eq!(chain.answered_by(), None);

    for kind in [
        KeyErrorKind::Unavailable,
        KeyErrorKind::Timeout,
        KeyErrorKind::Invalid,
        KeyErrorKind::Config,
        KeyErrorKind::Expired,
    ] {
        let fallback = link(None, Ok("sk-never-reached-00000002"));
        let chain = KeySourceChain::new(link(None, Err((kind, None)))).or(fallback.clone());
        assert_eq!(chain.load().await.unwrap_err().kind(), kind);
        assert_eq!(fallback.loads(), 0, "{kind:?} fell through");
    }
}

#[tokio::test]
async fn all_missing_is_one_missing_error_listing_every_link() {
    let chain = KeySourceChain::new(missing("environment variable A"))
        .or(link(
            Some("key file /b"),
            Err((KeyErrorKind::Missing, Some("key file /b"))),
        ))
        .or(link(None, Err((KeyErrorKind::Missing, None))));
    let err = chain.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing);
    assert_eq!(err.origin(), Some("key source chain"));
    assert_eq!(
        err.to_string(),
        "key source chain: no source has a key: environment variable A: has nothing for you; \
         key file /b: has nothing for you; link 3: has nothing for you"
    );
}

#[test]
fn a_chain_is_static_when_its_first_link_is() {
    let key = || StaticKey::new(ApiKey::new("sk-static-0123456789abc").unwrap());
    assert!(KeySourceChain::new(key()).or(missing("b")).is_static());
    assert!(!KeySourceChain::new(missing("a")).or(key()).is_static());
}

#[cfg(all(feature = "env", feature = "file"))]
#[tokio::test]
async fn env_else_file_with_the_real_sources() {
    use tower_bearer::{EnvKeySource, FileKeySource};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-key");
    std::fs::write(&path, "sk-from-the-file-0123456789\n").unwrap();
    // A variable no one sets (nor its _FILE): read, never written.
    let var = format!("TB_CHAIN_TEST_UNSET_{}", std::process::id());
    let chain = KeySourceChain::new(EnvKeySource::new(&var))
        .or(FileKeySource::new(dir.path().join("not-there")))
        .or(FileKeySource::new(&path));
    let key = chain.load().await.unwrap();
    assert_eq!(key.expose_secret(), "sk-from-the-file-0123456789");
    assert_eq!(
        chain.answered_by(),
        Some(format!("key file {}", path.display()))
    );

    std::fs::remove_file(&path).unwrap();
    let err = chain.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing);
    let text = err.to_string();
    assert!(
        text.contains(&format!("environment variable {var}: is not set")),
        "{text}"
    );
    assert_eq!(text.matches("does not exist").count(), 2, "{text}");
}
