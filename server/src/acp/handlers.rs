//! The ACP method table: one handler per method, registered on the SDK's agent builder.
//!
//! Handlers run inside the SDK's dispatch loop, which waits for each before reading the next
//! message; so anything that waits on the client, a browser or a turn (authenticate, prompt,
//! close) answers from its own task.

use std::future::Future;
use std::sync::Arc;

use agent_client_protocol::v1::schema::{
    AuthenticateRequest, CancelNotification, CloseSessionRequest, InitializeRequest,
    ListSessionsRequest, LoadSessionRequest, NewSessionRequest, PromptRequest,
    ResumeSessionRequest, SetSessionConfigOptionRequest, SetSessionModeRequest,
};
use agent_client_protocol::v1::{Builder, ConnectionTo, Responder};
use agent_client_protocol::{
    Agent as AgentRole, Client, HandleConnectionClose, HandleDispatchFrom, JsonRpcResponse,
    RunWithConnectionTo,
};

use super::{Agent, lifecycle, prompt};

type Reply<T> = Result<T, agent_client_protocol::Error>;

/// Answers a request from a task of its own, tracked so the process waits for it before exiting.
fn spawn_answer<T, F>(agent: &Agent, responder: Responder<T>, work: F)
where
    T: JsonRpcResponse + Send + 'static,
    F: Future<Output = Reply<T>> + Send + 'static,
{
    agent.tasks.spawn(async move {
        if let Err(err) = responder.respond_with_result(work.await) {
            tracing::debug!(%err, "could not answer: the client is gone");
        }
    });
}

/// Registers a handler for requests of type `$ty` answered inside the dispatch loop: `$body`
/// (a `Reply`) may use the agent as `$a` and the request as `$request`.
macro_rules! answer_now {
    ($builder:expr, $agent:expr, $ty:ty, |$a:ident, $request:ident| $body:expr) => {{
        let $a = Arc::clone(&$agent);
        $builder.on_receive_request(
            async move |$request: $ty, responder, cx: ConnectionTo<Client>| {
                $a.link.attach(&cx);
                responder.respond_with_result($body)
            },
            agent_client_protocol::on_receive_request!(),
        )
    }};
}

/// Registers a handler for requests of type `$ty` answered from their own task: `$body` (an
/// async block's body yielding a `Reply`) owns the agent as `$a` and the request as `$request`.
macro_rules! answer_later {
    ($builder:expr, $agent:expr, $ty:ty, |$a:ident, $request:ident| $body:expr) => {{
        let shared = Arc::clone(&$agent);
        $builder.on_receive_request(
            async move |$request: $ty, responder, cx: ConnectionTo<Client>| {
                shared.link.attach(&cx);
                let $a = Arc::clone(&shared);
                spawn_answer(&shared, responder, async move { $body });
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
    }};
}

/// The agent side of the connection with every ACP method this agent serves.
pub(crate) fn builder(
    agent: Arc<Agent>,
) -> Builder<
    AgentRole,
    impl HandleDispatchFrom<Client> + 'static,
    impl RunWithConnectionTo<Client> + 'static,
    impl HandleConnectionClose<Client> + 'static,
> {
    let b = AgentRole.v1().name("agent-server");
    let b = answer_now!(b, agent, InitializeRequest, |a, request| Ok(
        lifecycle::initialize(&a, &request)
    ));
    let b = answer_later!(b, agent, AuthenticateRequest, |a, request| {
        lifecycle::authenticate(a, request).await
    });
    let b = answer_now!(b, agent, NewSessionRequest, |a, request| a
        .new_session(request)
        .await);
    // Loading reads the store and replays history, waiting for the client to read it.
    let b = answer_later!(b, agent, LoadSessionRequest, |a, request| a
        .load_session(request)
        .await);
    let b = answer_later!(b, agent, ResumeSessionRequest, |a, request| a
        .resume_session(request)
        .await);
    let b = answer_now!(b, agent, ListSessionsRequest, |a, request| a
        .list_sessions(&request));
    let b = answer_later!(b, agent, CloseSessionRequest, |a, request| a
        .close_session(request)
        .await);
    let b = answer_later!(b, agent, PromptRequest, |a, request| prompt::prompt(
        a, request
    )
    .await);
    let b = answer_now!(b, agent, SetSessionModeRequest, |a, request| a
        .set_mode(&request));
    let b = answer_now!(b, agent, SetSessionConfigOptionRequest, |a, request| a
        .set_config_option(&request)
        .await);
    let cancel = Arc::clone(&agent);
    b.on_receive_notification(
        async move |notification: CancelNotification, cx: ConnectionTo<Client>| {
            cancel.link.attach(&cx);
            prompt::cancel(&cancel, &notification);
            Ok(())
        },
        agent_client_protocol::on_receive_notification!(),
    )
}
