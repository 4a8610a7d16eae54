//! The ACP method table: one handler per method, registered on the SDK's agent builder.
//!
//! Handlers run inside the SDK's dispatch loop, which waits for each before reading the next
//! message; so anything that waits on the client, a browser or a turn (authenticate, prompt,
//! close) answers from its own task.

use std::future::Future;
use std::sync::Arc;

use agent_client_protocol::v1::schema::{
    AuthenticateRequest, CancelNotification, CloseSessionRequest, InitializeRequest,
    ListSessionsRequest, NewSessionRequest, PromptRequest, SetSessionConfigOptionRequest,
    SetSessionModeRequest,
};
use agent_client_protocol::v1::{Builder, ConnectionTo, Responder};
use agent_client_protocol::{
    Agent as AgentRole, Client, HandleConnectionClose, HandleDispatchFrom, JsonRpcResponse,
    RunWithConnectionTo,
};

use super::{Agent, lifecycle, prompt};

type Reply<T> = Result<T, agent_client_protocol::Error>;

/// Answers a request from a task of its own, tracked so the process waits for it before exiting.
fn answer_later<T, F>(agent: &Agent, responder: Responder<T>, work: F)
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

/// The agent side of the connection with every ACP method this agent serves.
pub(crate) fn builder(
    agent: Arc<Agent>,
) -> Builder<
    AgentRole,
    impl HandleDispatchFrom<Client> + 'static,
    impl RunWithConnectionTo<Client> + 'static,
    impl HandleConnectionClose<Client> + 'static,
> {
    let (a1, a2, a3, a4, a5, a6, a7, a8, a9) = (
        Arc::clone(&agent),
        Arc::clone(&agent),
        Arc::clone(&agent),
        Arc::clone(&agent),
        Arc::clone(&agent),
        Arc::clone(&agent),
        Arc::clone(&agent),
        Arc::clone(&agent),
        Arc::clone(&agent),
    );
    AgentRole
        .v1()
        .name("agent-server")
        .on_receive_request(
            async move |request: InitializeRequest, responder, cx: ConnectionTo<Client>| {
                a1.link.attach(&cx);
                responder.respond(lifecycle::initialize(&a1, &request))
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: AuthenticateRequest, responder, cx: ConnectionTo<Client>| {
                a2.link.attach(&cx);
                answer_later(
                    &a2,
                    responder,
                    lifecycle::authenticate(Arc::clone(&a2), request),
                );
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: NewSessionRequest, responder, cx: ConnectionTo<Client>| {
                a3.link.attach(&cx);
                responder.respond_with_result(a3.new_session(request).await)
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: ListSessionsRequest, responder, cx: ConnectionTo<Client>| {
                a4.link.attach(&cx);
                responder.respond(a4.list_sessions(&request))
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: CloseSessionRequest, responder, cx: ConnectionTo<Client>| {
                a5.link.attach(&cx);
                let agent = Arc::clone(&a5);
                answer_later(
                    &a5,
                    responder,
                    async move { agent.close_session(request).await },
                );
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: PromptRequest, responder, cx: ConnectionTo<Client>| {
                a6.link.attach(&cx);
                answer_later(&a6, responder, prompt::prompt(Arc::clone(&a6), request));
                Ok(())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_notification(
            async move |notification: CancelNotification, cx: ConnectionTo<Client>| {
                a7.link.attach(&cx);
                prompt::cancel(&a7, &notification);
                Ok(())
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .on_receive_request(
            async move |request: SetSessionModeRequest, responder, cx: ConnectionTo<Client>| {
                a8.link.attach(&cx);
                responder.respond_with_result(a8.set_mode(&request))
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: SetSessionConfigOptionRequest,
                        responder,
                        cx: ConnectionTo<Client>| {
                a9.link.attach(&cx);
                responder.respond_with_result(a9.set_config_option(&request))
            },
            agent_client_protocol::on_receive_request!(),
        )
}
