//! Typed method registration on top of jsonrpsee's `RpcModule`.
//!
//! jsonrpsee gives the method table, the callback types and error objects; its params
//! parsing is replaced by ours so a bad field is reported as `invalidParams` with the field
//! path and what was expected, never as raw serde text alone.

use std::future::Future;
use std::sync::Arc;

use agent_server_schema::methods::Method;
use jsonrpsee::{Extensions, Methods, RpcModule};
use jsonrpsee_types::ErrorObjectOwned;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::RpcError;
use crate::gate::ReplyGate;

/// What a handler knows about the request it serves. The serve loop makes one per request and
/// hands it to the handler through jsonrpsee's extensions; a handler reached without it fails
/// the request as `internal` rather than run without cancellation or the reply gate.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Fires when the client cancels the request; the reply is then `-32800`.
    pub cancel: CancellationToken,
    /// Opens once the reply has been queued for writing. Work a handler starts in the
    /// background waits for it before sending notifications, so the reply always comes first.
    pub reply_gate: ReplyGate,
}

impl RequestContext {
    #[allow(
        clippy::new_without_default,
        reason = "no Default on purpose: a context is made by the serve loop for one request, never filled in"
    )]
    /// The context of a request that has just arrived: not cancelled, reply not yet queued.
    pub fn new() -> Self {
        Self {
            cancel: CancellationToken::new(),
            reply_gate: ReplyGate::new(),
        }
    }
}

/// The table of methods being built, with the context every handler gets.
pub struct MethodTable<C: Send + Sync + 'static> {
    module: RpcModule<C>,
}

impl<C: Send + Sync + 'static> MethodTable<C> {
    /// An empty table whose handlers share `context`.
    pub fn new(context: Arc<C>) -> Self {
        Self {
            module: RpcModule::from_arc(context),
        }
    }

    /// Registers the handler of method `M`. Registering a name twice keeps the first handler
    /// and logs an error; the api layer's tests check that its table holds every method once.
    pub fn add<M, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        M: Method,
        F: Fn(Arc<C>, M::Params, RequestContext) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Result, RpcError>> + Send + 'static,
    {
        let result =
            self.module
                .register_async_method(M::NAME, move |params, ctx, ext: Extensions| {
                    let handler = handler.clone();
                    async move {
                        let request = ext
                            .get::<RequestContext>()
                            .cloned()
                            .ok_or_else(|| missing_context(M::NAME))?;
                        let params = parse_params::<M::Params>(params.as_str())
                            .map_err(ErrorObjectOwned::from)?;
                        handler(ctx, params, request)
                            .await
                            .map_err(ErrorObjectOwned::from)
                    }
                });
        if let Err(err) = result {
            tracing::error!(%err, method = M::NAME, "a method was registered twice");
        }
        self
    }

    /// The finished table.
    pub fn into_methods(self) -> Methods {
        self.module.into()
    }
}

/// The error of a request whose handler was reached without its [`RequestContext`]: a wiring
/// bug, reported loudly instead of serving the request without cancellation or reply order.
fn missing_context(method: &str) -> ErrorObjectOwned {
    tracing::error!(
        method,
        "a request reached its handler without its context; this is a bug"
    );
    RpcError::internal(format!(
        "`{method}` was called without its request context; this is a bug in the server, please report it"
    ))
    .into()
}

/// Parses params; absent or `null` params read as `{}` so that all-optional params work.
pub fn parse_params<P: DeserializeOwned>(raw: Option<&str>) -> Result<P, RpcError> {
    let text = raw.unwrap_or("{}");
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(RpcError::from_params_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_server_schema::auth::{AuthStatus, AuthStatusParams};
    use agent_server_schema::methods::AuthStatusRequest;
    use pretty_assertions::assert_eq;
    use serde_json::{Value, json};

    #[tokio::test]
    async fn a_handler_reached_without_its_context_fails_loudly() {
        let mut table = MethodTable::new(Arc::new(()));
        table.add::<AuthStatusRequest, _, _>(|_, _: AuthStatusParams, _| async move {
            Ok(AuthStatus::default())
        });
        let methods = table.into_methods();
        // jsonrpsee's own entry point carries no RequestContext in its extensions.
        let (reply, _) = methods
            .raw_json_request(r#"{"jsonrpc":"2.0","id":1,"method":"auth/status"}"#, 1)
            .await
            .unwrap();
        let reply: Value = serde_json::from_str(reply.get()).unwrap();
        assert_eq!(
            reply["error"],
            json!({"code": -32603, "message": "`auth/status` was called without its request \
                context; this is a bug in the server, please report it",
                "data": {"kind": "internal"}})
        );
    }
}
