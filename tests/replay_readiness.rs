//! The replay after a 401 waits for the inner service to be ready before it calls it.
//!
//! The inner service is `tower_test`'s mock, whose readiness the test grants (`Handle::allow`)
//! or fails (`Handle::send_error`); the response future is polled by hand with a waker that
//! records being woken, so each test sees where the future stands: a reload after the 401, then
//! the replay waiting for readiness, then the replay sent. No sleeps: the runtime is only given
//! turns until the future is woken.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::sources::{req, Steered};
use support::InnerFailure;
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_bearer::{BearerAuth, BearerAuthLayer, ResponseFuture};
use tower_test::mock::{self, Handle, Mock};

const KEY_A: &str = "sk-readiness-key-AAAAAAAAAA";
const KEY_B: &str = "sk-readiness-key-BBBBBBBBBB";
const KEY_C: &str = "sk-readiness-key-CCCCCCCCCC";

type Req = Request<Full<Bytes>>;
type Res = Response<&'static str>;
type Svc = BearerAuth<Mock<Req, Res>>;

/// A future polled by hand, with a waker that records whether it was woken since the last poll.
struct Probe<F> {
    fut: Pin<Box<F>>,
    woken: Arc<Woken>,
}

struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl<F: Future + std::fmt::Debug> Probe<F> {
    fn new(fut: F) -> Self {
        Probe {
            fut: Box::pin(fut),
            woken: Arc::new(Woken(AtomicBool::new(false))),
        }
    }

    fn poll(&mut self) -> Poll<F::Output> {
        self.woken.0.store(false, Ordering::SeqCst);
        let waker = Waker::from(self.woken.clone());
        self.fut.as_mut().poll(&mut Context::from_waker(&waker))
    }

    fn is_woken(&self) -> bool {
        self.woken.0.load(Ordering::SeqCst)
    }

    /// Gives the runtime's other tasks (the reload runs as a task of its own) turns until the
    /// future is woken.
    async fn until_woken(&self) {
        for _ in 0..100 {
            if self.is_woken() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never woken: {:?}", self.fut);
    }

    /// What the future's `Debug` says it is doing.
    fn state(&self) -> String {
        format!("{:?}", self.fut)
    }
}

/// Takes the next request that reached the inner service and answers it with `status`;
/// returns the bearer token it carried and its body.
async fn answer(handle: &mut Handle<Req, Res>, status: u16, body: &'static str) -> (String, Bytes) {
    let (req, respond) = handle
        .next_request()
        .await
        .expect("a request reached the inner service");
    let token = support::bearer(&req).unwrap_or_default();
    let sent = req.into_body().collect().await.unwrap().to_bytes();
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    respond.send_response(res);
    (token, sent)
}

/// Sends [`req`] through `svc` while the inner service answers it 200: the status the caller
/// got and the token the inner service saw.
async fn exchange(svc: &mut Svc, handle: &mut Handle<Req, Res>) -> (StatusCode, String) {
    let call = async { svc.ready().await?.call(req()).await };
    let (res, (token, _)) = tokio::join!(call, answer(handle, 200, "ok"));
    (res.expect("answered").status(), token)
}

/// A layer over the mock whose cached key is KEY_A, then revoked: the source now gives KEY_B.
/// The mock lets exactly one more call through; the request sent through it is answered 401,
/// the key reloaded, and the response future is left with the replay waiting for readiness.
struct Rig {
    source: Arc<Steered>,
    layer: BearerAuthLayer,
    svc: Svc,
    handle: Handle<Req, Res>,
    probe: Probe<ResponseFuture<Mock<Req, Res>, Full<Bytes>>>,
}

async fn replay_waiting_for_readiness() -> Rig {
    let source = Steered::new(KEY_A, None);
    let layer = BearerAuthLayer::new(source.clone());
    let (mock, mut handle) = mock::pair::<Req, Res>();
    let mut svc = layer.layer(mock);
    assert_eq!(
        exchange(&mut svc, &mut handle).await,
        (StatusCode::OK, KEY_A.to_owned())
    );

    source.set(Some(KEY_B));
    handle.allow(1); // the request below, and nothing after it
    let fut = svc.ready().await.unwrap().call(req());
    let mut probe = Probe::new(fut);
    assert!(probe.poll().is_pending(), "sent, waiting for the answer");
    let (token, _) = answer(&mut handle, 401, "key revoked").await;
    assert_eq!(token, KEY_A);
    assert!(probe.is_woken(), "the 401 woke the future");
    assert!(probe.poll().is_pending(), "reloading after the 401");
    probe.until_woken().await;
    assert_eq!(source.loads(), 2, "the first load and the reload");
    assert_eq!(layer.handle().fingerprint().as_deref(), Some("sk-…BBBB"));

    assert!(probe.poll().is_pending(), "the inner service is not ready");
    assert!(
        probe.state().contains("waiting for the service to replay"),
        "{}",
        probe.state()
    );
    assert!(
        handle.poll_request().is_pending(),
        "the replay did not reach the inner service before it was ready"
    );
    Rig {
        source,
        layer,
        svc,
        handle,
        probe,
    }
}

#[tokio::test]
async fn the_replay_waits_for_readiness_then_goes_out_with_the_new_key() {
    let Rig {
        source,
        mut handle,
        mut probe,
        ..
    } = replay_waiting_for_readiness().await;

    // Turns of the runtime change nothing while the inner service stays not ready.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!probe.is_woken(), "nothing to wake the replay for yet");
    assert!(probe.poll().is_pending());
    assert!(handle.poll_request().is_pending(), "still nothing sent");

    handle.allow(1);
    assert!(
        probe.is_woken(),
        "readiness granted wakes the waiting replay"
    );
    assert!(
        probe.poll().is_pending(),
        "the replay is sent, its answer awaited"
    );
    let (token, body) = answer(&mut handle, 200, "replayed").await;
    assert_eq!(token, KEY_B, "the replay carries the new key");
    assert_eq!(body, "{}", "and the request's body");
    let Poll::Ready(res) = probe.poll() else {
        panic!("answered, yet pending: {}", probe.state());
    };
    let res = res.expect("the replay's answer");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        *res.body(),
        "replayed",
        "the caller gets the replay's answer"
    );
    assert_eq!(source.loads(), 2, "no load after the reload");
}

#[tokio::test]
async fn a_readiness_error_at_replay_time_reaches_the_caller() {
    let Rig {
        source,
        layer,
        mut svc,
        mut handle,
        mut probe,
    } = replay_waiting_for_readiness().await;

    handle.send_error(InnerFailure);
    assert!(probe.is_woken(), "the failure wakes the waiting replay");
    let Poll::Ready(res) = probe.poll() else {
        panic!("the readiness error left it pending: {}", probe.state());
    };
    // The 401 it had is dropped: the caller gets the inner service's error, unchanged.
    let err: BoxError = res.expect_err("the readiness error");
    assert!(err.downcast_ref::<InnerFailure>().is_some(), "{err:?}");
    assert!(
        handle.poll_request().is_pending(),
        "no replay was sent to a service that failed"
    );

    // The key stays the reloaded one, and the next request goes out with it.
    assert_eq!(layer.handle().fingerprint().as_deref(), Some("sk-…BBBB"));
    handle.allow(u64::MAX);
    assert_eq!(
        exchange(&mut svc, &mut handle).await,
        (StatusCode::OK, KEY_B.to_owned())
    );
    assert_eq!(source.loads(), 2);
}

#[tokio::test]
async fn a_caller_dropped_while_the_replay_waits_for_readiness_leaves_nothing_stuck() {
    let Rig {
        source,
        layer,
        mut svc,
        mut handle,
        probe,
    } = replay_waiting_for_readiness().await;

    drop(probe);
    handle.allow(u64::MAX);
    assert!(
        handle.poll_request().is_pending(),
        "the dropped replay was never sent"
    );

    // The next request goes out with the reloaded key: no 401, no load.
    assert_eq!(
        exchange(&mut svc, &mut handle).await,
        (StatusCode::OK, KEY_B.to_owned())
    );
    assert_eq!(source.loads(), 2);

    // And the next rotation heals through a 401, a reload and a replay as the first did.
    source.set(Some(KEY_C));
    let call = async { svc.ready().await?.call(req()).await };
    let server = async {
        let rejected = answer(&mut handle, 401, "key revoked").await.0;
        let replayed = answer(&mut handle, 200, "replayed").await.0;
        (rejected, replayed)
    };
    let (res, tokens) = tokio::join!(call, server);
    assert_eq!(res.unwrap().status(), StatusCode::OK);
    assert_eq!(tokens, (KEY_B.to_owned(), KEY_C.to_owned()));
    assert_eq!(source.loads(), 3);
    assert_eq!(layer.handle().fingerprint().as_deref(), Some("sk-…CCCC"));
}
