//! The planning endpoints: `plan`, `plan/{id}` (fetch, cancel), `tasks`.
//!
//! Every plan has a row in the catalog database from the moment it is
//! submitted, so any origin behind the edges can answer for it. Planning
//! runs on a task of its own; when it finishes within
//! `catalog.plan_sync_budget_ms` the submit answers `completed` at once,
//! otherwise `submitted`, and the task stores the result when it is done
//! (unless the plan was cancelled meanwhile: the store's compare-and-set
//! decides).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{FetchTasksRequest, PlanRequest};
use crate::catalog::{Catalog, table_display};
use crate::delegation::DelegationRequest;
use crate::error::{CatalogError, Result};
use crate::storage::Confinement;
use crate::store::TableRecord;
use crate::warehouse::Warehouse;

/// A planning answer: its HTTP status and body.
#[derive(Debug)]
pub struct PlanAnswer {
    /// 200, or the failure's status for a failed plan.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Value,
}

fn ok(body: Value) -> PlanAnswer {
    PlanAnswer {
        status: StatusCode::OK,
        body,
    }
}

/// `<plan id>.<page>`: what a plan task names.
fn plan_task(id: &str, page: i64) -> String {
    format!("{id}.{page}")
}

fn parse_plan_task(task: &str) -> Option<(&str, i64)> {
    let (id, page) = task.rsplit_once('.')?;
    let page: i64 = page.parse().ok()?;
    (!id.is_empty() && page >= 0).then_some((id, page))
}

fn error_body(err: &CatalogError) -> Value {
    let model = err.to_model();
    json!({"error": {"message": model.message, "type": model.r#type, "code": model.code}})
}

impl Catalog {
    async fn planned_table(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
    ) -> Result<(Arc<Warehouse>, TableRecord)> {
        let warehouse = self.warehouse(prefix).await?;
        let record = self
            .store()
            .table(&warehouse.record.id, levels, name, false)
            .await?
            .ok_or_else(|| {
                CatalogError::NoSuchTable(format!(
                    "Table does not exist: {}",
                    table_display(levels, name)
                ))
            })?;
        Ok((warehouse, record))
    }

    /// The completed answer: the first page inline, the others as plan tasks.
    async fn completed(
        &self,
        warehouse: &Warehouse,
        record: &TableRecord,
        id: &str,
        first_page: &str,
        pages: i64,
        delegation: DelegationRequest,
    ) -> Result<PlanAnswer> {
        let mut body: Value = serde_json::from_str(first_page)?;
        if let Value::Object(map) = &mut body {
            map.insert("status".into(), json!("completed"));
            map.insert("plan-id".into(), json!(id));
            map.insert(
                "plan-tasks".into(),
                json!((1..pages).map(|p| plan_task(id, p)).collect::<Vec<_>>()),
            );
            if delegation.requested.vended {
                let location = serde_json::from_str::<Value>(&record.metadata)?
                    .get("location")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_default();
                let exclusive = self.check_exclusive(&location, &record.id).await.is_ok();
                if exclusive
                    && let Some(credential) = warehouse
                        .delegator
                        .vend(&location, delegation.access)
                        .await?
                {
                    map.insert("storage-credentials".into(), json!([credential]));
                }
            }
        }
        Ok(ok(body))
    }

    /// `POST …/tables/{t}/plan`.
    pub async fn plan_scan(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
        req: PlanRequest,
        delegation: DelegationRequest,
        principal: &str,
    ) -> Result<PlanAnswer> {
        let (warehouse, record) = self.planned_table(prefix, levels, name).await?;
        let limit = self.settings().plan_max_running_per_principal;
        let slot = self.running_plans().slot(principal, limit).ok_or_else(|| {
            CatalogError::TooManyRequests(format!(
                "Scan planning: {limit} plans of this principal are running already; retry when \
                 one has finished"
            ))
        })?;
        let metadata =
            Arc::new(crate::catalog::parse_stored_metadata(record.metadata.clone()).await?);
        let scan = super::check(&metadata, &req)?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let settings = self.settings().clone();
        self.store()
            .insert_plan(
                &id,
                &record.id,
                Duration::from_secs(settings.plan_ttl_seconds),
            )
            .await?;
        self.check_exclusive(metadata.location(), &record.id)
            .await?;
        let confinement = Confinement::new(metadata.location(), &[]);
        let file_io = warehouse.confined_io(confinement.clone());
        let store = self.store().clone();
        let running = self.running_plans().clone();
        let task_id = id.clone();
        let location = record.metadata_location.clone();
        let ident = (levels.to_vec(), name.to_string());
        let mut handle = tokio::spawn(async move {
            let _slot = slot;
            let result = super::plan(
                metadata,
                location,
                file_io,
                confinement,
                ident,
                scan,
                settings.plan_page_size,
                settings.plan_max_tasks,
            )
            .await;
            let stored = match &result {
                Ok(pages) => store.complete_plan(&task_id, pages).await,
                Err(e) => store.fail_plan(&task_id, &error_body(e).to_string()).await,
            };
            running.remove(&task_id);
            if let Err(e) = &stored {
                tracing::warn!(plan = %task_id, error = %e, "scan plan result not stored");
            }
            result.and_then(|pages| stored.map(|_| pages))
        });
        self.running_plans().insert(&id, handle.abort_handle());
        let submitted = || Ok(ok(json!({"status": "submitted", "plan-id": id})));
        if settings.plan_sync_budget_ms == 0 {
            return submitted();
        }
        let budget = Duration::from_millis(settings.plan_sync_budget_ms);
        match tokio::time::timeout(budget, &mut handle).await {
            Ok(Ok(Ok(pages))) => {
                let first = pages.first().map_or("{}", String::as_str);
                self.completed(
                    &warehouse,
                    &record,
                    &id,
                    first,
                    pages.len() as i64,
                    delegation,
                )
                .await
            }
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(join)) => Err(CatalogError::internal(format!(
                "scan planning stopped: {join}"
            ))),
            Err(_) => submitted(),
        }
    }

    /// `GET …/tables/{t}/plan/{plan-id}`.
    pub async fn fetch_plan(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
        id: &str,
        delegation: DelegationRequest,
    ) -> Result<PlanAnswer> {
        let (warehouse, record) = self.planned_table(prefix, levels, name).await?;
        let plan = self
            .store()
            .plan(id)
            .await?
            .filter(|p| p.table_id == record.id)
            .ok_or_else(|| CatalogError::NoSuchPlanId(format!("No such scan plan: {id}")))?;
        match plan.status.as_str() {
            "completed" => {
                let first = self
                    .store()
                    .plan_page(id, 0)
                    .await?
                    .unwrap_or_else(|| "{}".to_string());
                self.completed(&warehouse, &record, id, &first, plan.pages, delegation)
                    .await
            }
            "failed" => {
                let mut body: Value = plan
                    .error
                    .as_deref()
                    .and_then(|e| serde_json::from_str(e).ok())
                    .unwrap_or_else(|| json!({"error": {"message": "planning failed", "type": "InternalServerError", "code": 500}}));
                let code = body["error"]["code"].as_u64().unwrap_or(500);
                if let Value::Object(map) = &mut body {
                    map.insert("status".into(), json!("failed"));
                }
                Ok(PlanAnswer {
                    status: StatusCode::from_u16(code as u16)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    body,
                })
            }
            other => Ok(ok(json!({"status": other}))),
        }
    }

    /// `DELETE …/tables/{t}/plan/{plan-id}`.
    pub async fn cancel_plan(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
        id: &str,
    ) -> Result<()> {
        let (_, record) = self.planned_table(prefix, levels, name).await?;
        let known = self
            .store()
            .plan(id)
            .await?
            .is_some_and(|p| p.table_id == record.id);
        if !known || !self.store().cancel_plan(id).await? {
            return Err(CatalogError::NoSuchPlanId(format!(
                "No such scan plan: {id}"
            )));
        }
        if let Some(handle) = self.running_plans().remove(id) {
            handle.abort();
        }
        Ok(())
    }

    /// `POST …/tables/{t}/tasks`: the file scan tasks of one plan task.
    pub async fn fetch_scan_tasks(
        &self,
        prefix: &str,
        levels: &[String],
        name: &str,
        req: FetchTasksRequest,
    ) -> Result<Value> {
        let (_, record) = self.planned_table(prefix, levels, name).await?;
        let missing =
            || CatalogError::NoSuchPlanTask(format!("No such plan task: {}", req.plan_task));
        let (id, page) = parse_plan_task(&req.plan_task).ok_or_else(missing)?;
        self.store()
            .plan(id)
            .await?
            .filter(|p| p.table_id == record.id && p.status == "completed" && page < p.pages)
            .ok_or_else(missing)?;
        let body = self
            .store()
            .plan_page(id, page)
            .await?
            .ok_or_else(missing)?;
        let mut body: Value = serde_json::from_str(&body)?;
        if let Value::Object(map) = &mut body {
            map.insert("plan-tasks".into(), json!([]));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_tasks_round_trip() {
        assert_eq!(parse_plan_task(&plan_task("abc", 3)), Some(("abc", 3)));
        assert_eq!(parse_plan_task("abc"), None);
        assert_eq!(parse_plan_task(".1"), None);
        assert_eq!(parse_plan_task("abc.-1"), None);
        assert_eq!(parse_plan_task("abc.x"), None);
    }
}
