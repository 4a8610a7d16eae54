//! `model/list`: the model catalog.

use std::sync::Arc;

use agent_server_schema::methods::ListModels;
use agent_server_schema::models::ListModelsResult;

use super::App;
use crate::rpc::MethodTable;

/// Registers the model methods.
pub fn register(table: &mut MethodTable<App>) {
    table.add::<ListModels, _, _>(|app: Arc<App>, _params, _| async move {
        Ok(ListModelsResult {
            models: app.sessions.list_models().await,
        })
    });
}
