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

/// What a handler knows about the request it serves.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Fires when the client cancels the request; the reply is then `-32800`.
    pub cancel: CancellationToken,
    /// Opens once the reply has been queued for writing. Work a handler starts in the
    /// background waits for it before sending notifications, so the reply always comes first.
    pub reply_gate: ReplyGate,
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
                        let request = ext.get::<RequestContext>().cloned().unwrap_or_default();
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

/// Parses params; absent or `null` params read as `{}` so that all-optional params work.
pub fn parse_params<P: DeserializeOwned>(raw: Option<&str>) -> Result<P, RpcError> {
    let text = raw.unwrap_or("{}");
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(RpcError::from_params_error)
}
