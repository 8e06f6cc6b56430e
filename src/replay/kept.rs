//! The bodies a request can be replayed with: the in-memory ones, cloned, and a
//! [`ReplayableBody`]'s handle. One list for the 401 replay's copy and the transient retry's.

use std::any::Any;

use bytes::Bytes;
use http_body_util::{Empty, Full};

use super::body::ReplayableBody;

/// A body that can be had again, whatever the request's body type was.
pub(super) enum KeptBody {
    Full(Full<Bytes>),
    Empty(Empty<Bytes>),
    String(String),
    Replayable(ReplayableBody),
}

impl KeptBody {
    /// A clone of `body`, if it is one of the kinds that can be had again. For `Full<Bytes>`
    /// that is a reference count, not a copy of the data.
    #[inline(always)]
    pub(super) fn clone_of<B: 'static>(body: &B) -> Option<KeptBody> {
        // The type tests are constants after monomorphization: no cost for other body types.
        let any = body as &dyn Any;
        if let Some(b) = any.downcast_ref::<Full<Bytes>>() {
            return Some(KeptBody::Full(b.clone()));
        }
        if let Some(b) = any.downcast_ref::<Empty<Bytes>>() {
            return Some(KeptBody::Empty(*b));
        }
        if let Some(b) = any.downcast_ref::<String>() {
            return Some(KeptBody::String(b.clone()));
        }
        if let Some(b) = any.downcast_ref::<ReplayableBody>() {
            return Some(KeptBody::Replayable(b.replay_handle()));
        }
        None
    }

    /// The body as the request's type again; `None` if it is another (it never is: it came
    /// from a `B`).
    pub(super) fn into_body<B: 'static>(self) -> Option<B> {
        match self {
            KeptBody::Full(b) => cast(b),
            KeptBody::Empty(b) => cast(b),
            KeptBody::String(b) => cast(b),
            KeptBody::Replayable(b) => cast(b),
        }
    }

    /// Whether the body can be sent now. Only a [`ReplayableBody`] can say no.
    pub(super) fn can_replay(&self) -> bool {
        match self {
            KeptBody::Replayable(body) => body.can_replay(),
            _ => true,
        }
    }
}

/// Turns a `T` into a `U` known to be the same type, without boxing.
fn cast<T: 'static, U: 'static>(value: T) -> Option<U> {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
}
