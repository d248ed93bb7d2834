//! Group commit: concurrent commits to one table, applied in order onto one
//! new metadata version.
//!
//! Commits to a table queue in its lane. One task per busy lane (the
//! leader, detached from every client so that none hanging up stops it)
//! takes what has queued, loads the table once and, in arrival order,
//! checks each commit's requirements against the version its predecessors
//! in the group produced and applies its updates. A commit whose
//! requirements fail gets its own 409 and a commit the `iceberg` crate
//! refuses its own 400; neither is applied, and the others go on. What
//! remains is written as one metadata file and one compare-and-set of the
//! pointer, so the metadata log gains one entry per group. Every member's
//! answer is the group's new version, which holds its updates.
//!
//! The database still decides between origins: when another process moved
//! the pointer first, the group's file is deleted and its members run again
//! on the new version (each up to `catalog.commit_max_retries` times), with
//! whatever queued meanwhile. Creates and commits that move the table
//! (`set-location`) are not grouped; they run alone on the engine in
//! `commit`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use iceberg::TableUpdate;
use iceberg::spec::{MetadataLog, TableMetadata};
use tokio::sync::oneshot;

use super::Catalog;
use super::confinement::check_update_paths;
use super::documents::{
    build_documents, delete_quietly, next_metadata_location, parse_metadata, write_metadata_file,
};
use super::names::{no_such, table_display};
use super::table_commits::{Applied, NewMetadata, apply_commit};
use super::tables::TableResponse;
use crate::error::{CatalogError, Result};
use crate::storage::StoragePath;
use crate::store::{ObjectKind, TableRecord};
use crate::warehouse::Warehouse;
use crate::wire::CommitTableRequest;

/// A table's lane: warehouse id, namespace levels, table name.
type LaneKey = (String, Vec<String>, String);

/// One commit waiting for its group.
struct Pending {
    req: CommitTableRequest,
    /// Its Idempotency-Key, marked applied with the group's swap.
    key: Option<String>,
    /// Rounds it has been part of.
    rounds: u32,
    reply: oneshot::Sender<Result<TableResponse>>,
}

/// The lanes with a leader at work, and the commits queued behind it.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    lanes: Mutex<HashMap<LaneKey, Vec<Pending>>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

/// Whether a commit may share its version with others: not a create, and
/// not a move of the table.
pub(super) fn groupable(req: &CommitTableRequest) -> bool {
    !req.requirements
        .iter()
        .any(|r| matches!(r, iceberg::TableRequirement::NotExist))
        && !req
            .updates
            .iter()
            .any(|u| matches!(u, TableUpdate::SetLocation { .. }))
}

/// Removes the lane when its leader ends without closing it (a panic):
/// commits still queued then get an error instead of waiting forever. A
/// leader that ends normally has closed its lane itself ([`Groups::next`]),
/// and a new leader may already own the key: the guard is disarmed then.
struct LaneGuard {
    groups: Arc<Groups>,
    key: LaneKey,
    armed: bool,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut lanes = self
            .groups
            .lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        lanes.remove(&self.key);
    }
}

/// The table a leader commits to.
struct Target {
    warehouse: Arc<Warehouse>,
    prefix: String,
    levels: Vec<String>,
    name: String,
}

impl Groups {
    /// Queues `pending` in its lane; the queue when this call must start
    /// the lane's leader (there was none), else `None`.
    fn enqueue(&self, key: &LaneKey, pending: Pending) -> Option<Vec<Pending>> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = lanes.get_mut(key) {
            queue.push(pending);
            return None;
        }
        lanes.insert(key.clone(), Vec::new());
        Some(vec![pending])
    }

    /// The next group: `carried` (members of a group that lost a race)
    /// first, then what queued meanwhile; `None` when there is nothing
    /// left, the lane then closed in the same step.
    fn next(&self, key: &LaneKey, mut carried: Vec<Pending>) -> Option<Vec<Pending>> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let queued = lanes.get_mut(key).map(std::mem::take).unwrap_or_default();
        carried.extend(queued);
        if carried.is_empty() {
            lanes.remove(key);
            return None;
        }
        Some(carried)
    }
}

/// Sends a member its answer, counted by outcome.
fn answer(catalog: &Catalog, pending: Pending, result: Result<TableResponse>) {
    catalog.metrics.commit(match &result {
        Ok(_) => "committed",
        Err(CatalogError::CommitFailed(_)) => "conflict",
        Err(CatalogError::BadRequest(_)) => "rejected",
        Err(_) => "error",
    });
    // A client that went away no longer listens; its commit stands.
    let _ = pending.reply.send(result);
}

/// A copy of a group's answer for one more member.
fn copy(response: &Result<TableResponse>) -> Result<TableResponse> {
    match response {
        Ok(response) => Ok(response.clone()),
        Err(err) => Err(err.replicate()),
    }
}

/// Answers every member with (a copy of) one error.
fn answer_all(catalog: &Catalog, members: Vec<Pending>, err: &CatalogError) {
    tracing::warn!(error = %err, members = members.len(), "group commit failed");
    for pending in members {
        answer(catalog, pending, Err(err.replicate()));
    }
}

/// A group applied: who is in, who is refused (and why), and the new
/// version with the metadata log entries it expired (`None` when nothing
/// changes).
struct Group {
    accepted: Vec<Pending>,
    refused: Vec<(Pending, CatalogError)>,
    version: Option<(TableMetadata, Vec<MetadataLog>)>,
}

/// Applies `members` in order onto `base`, the version stored at
/// `base_file`.
fn apply_group(base_file: &str, base: &TableMetadata, members: Vec<Pending>) -> Group {
    // The table's location: every member's paths must stay inside it.
    let path = StoragePath::parse(base.location()).map_err(|e| {
        CatalogError::BadRequest(format!(
            "Storage confinement: the table's location {} is not an allowed storage path \
             ({e}); move it with set-location",
            base.location()
        ))
    });
    let mut running: Option<TableMetadata> = None;
    let mut expired = Vec::new();
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for mut pending in members {
        let attempt = pending.rounds;
        pending.rounds += 1;
        // The first change of the group logs the stored version; later ones
        // build on a version not written yet.
        let (on, previous) = match &running {
            None => (base.clone(), Some(base_file)),
            Some(version) => (version.clone(), None),
        };
        let applied =
            apply_commit(on, previous, &pending.req, attempt).and_then(|applied| {
                match (&applied, &path) {
                    (Some(_), Err(err)) => Err(err.replicate()),
                    (Some(_), Ok(path)) => {
                        check_update_paths(path, &pending.req.updates).map(|()| applied)
                    }
                    (None, _) => Ok(applied),
                }
            });
        match applied {
            Ok(None) => accepted.push(pending),
            Ok(Some(Applied {
                metadata,
                expired: dropped,
                ..
            })) => {
                running = Some(metadata);
                expired.extend(dropped);
                accepted.push(pending);
            }
            Err(CatalogError::BadRequest(message)) if running.is_some() => {
                // Refused on top of the group: bad input only if the stored
                // version refuses it too, else a conflict with the others.
                let alone = apply_commit(base.clone(), Some(base_file), &pending.req, attempt);
                let err = match alone {
                    Err(err @ CatalogError::BadRequest(_)) => err,
                    _ => CatalogError::CommitFailed(format!(
                        "Commit failed: conflicts with a concurrent commit to the same table \
                         ({message})"
                    )),
                };
                refused.push((pending, err));
            }
            Err(err) => refused.push((pending, err)),
        }
    }
    Group {
        accepted,
        refused,
        version: running.map(|metadata| (metadata, expired)),
    }
}

impl Catalog {
    /// Runs a commit (one that [`groupable`] allows) in its table's group.
    pub(super) async fn commit_in_group(
        &self,
        warehouse: Arc<Warehouse>,
        prefix: &str,
        levels: &[String],
        name: &str,
        req: CommitTableRequest,
    ) -> Result<TableResponse> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            req,
            key: crate::store::IDEMPOTENCY_KEY.try_with(Clone::clone).ok(),
            rounds: 0,
            reply,
        };
        let key: LaneKey = (
            warehouse.record.id.clone(),
            levels.to_vec(),
            name.to_string(),
        );
        if let Some(first) = self.groups.enqueue(&key, pending) {
            let target = Target {
                warehouse,
                prefix: prefix.to_string(),
                levels: levels.to_vec(),
                name: name.to_string(),
            };
            tokio::spawn(self.clone().lead(key, target, first));
        }
        answer.await.map_err(|_| {
            CatalogError::internal("the group commit ended without an answer".into())
        })?
    }

    /// The lane's leader: groups until the lane is empty.
    async fn lead(self, key: LaneKey, target: Target, first: Vec<Pending>) {
        let mut guard = LaneGuard {
            groups: self.groups.clone(),
            key: key.clone(),
            armed: true,
        };
        let mut members = Some(first);
        while let Some(group) = members {
            let carried = self.run_group(&target, group).await;
            members = self.groups.next(&key, carried);
        }
        // `next` closed the lane.
        guard.armed = false;
    }

    /// One group round; returns the members that must run again (the
    /// compare-and-set lost to another process).
    async fn run_group(&self, target: &Target, members: Vec<Pending>) -> Vec<Pending> {
        let warehouse = &target.warehouse;
        let (levels, name) = (&target.levels, &target.name);
        let current = match self
            .store
            .table(&warehouse.record.id, levels, name, false)
            .await
        {
            Ok(Some(current)) => current,
            Ok(None) => {
                answer_all(self, members, &no_such(ObjectKind::Table, levels, name));
                return Vec::new();
            }
            Err(err) => {
                answer_all(self, members, &err);
                return Vec::new();
            }
        };
        let base = match parse_metadata(current.metadata.clone()).await {
            Ok(base) => base,
            Err(err) => {
                answer_all(self, members, &err);
                return Vec::new();
            }
        };
        self.metrics.commit_group(members.len());
        let Group {
            accepted,
            refused,
            version,
        } = apply_group(&current.metadata_location, &base, members);
        for (pending, err) in refused {
            answer(self, pending, Err(err));
        }
        let Some((metadata, expired)) = version else {
            // Nothing changes: the members' answer is the current version.
            let response = self.table_response(
                warehouse,
                Some(&current.metadata_location),
                &current.metadata,
            );
            for pending in accepted {
                let response = copy(&response);
                answer(self, pending, response);
            }
            return Vec::new();
        };
        self.swap_group(target, &current, metadata, expired, accepted)
            .await
    }

    /// Writes the group's version and moves the pointer to it; answers the
    /// members, or returns them when another process moved it first.
    async fn swap_group(
        &self,
        target: &Target,
        current: &TableRecord,
        metadata: TableMetadata,
        expired: Vec<MetadataLog>,
        accepted: Vec<Pending>,
    ) -> Vec<Pending> {
        let warehouse = &target.warehouse;
        let file = next_metadata_location(&current.metadata_location, &metadata);
        if let Err(err) = write_metadata_file(warehouse, &metadata, &file).await {
            answer_all(self, accepted, &err);
            return Vec::new();
        }
        let (metadata, docs) = match build_documents(metadata, file.to_string()).await {
            Ok(built) => built,
            Err(err) => {
                delete_quietly(warehouse, &file.to_string()).await;
                answer_all(self, accepted, &err);
                return Vec::new();
            }
        };
        let keys: Vec<String> = accepted.iter().filter_map(|p| p.key.clone()).collect();
        let swapped = self
            .store
            .swap_table_metadata_for(&current.id, &current.metadata_location, &docs, &keys)
            .await;
        match swapped {
            Ok(true) => {}
            Ok(false) => {
                // Another process committed first: run again on its version.
                delete_quietly(warehouse, &docs.metadata_location).await;
                self.metrics.commit_retry();
                let attempts = self.settings.commit_max_retries + 1;
                let (again, spent): (Vec<_>, Vec<_>) =
                    accepted.into_iter().partition(|p| p.rounds < attempts);
                let lost = CatalogError::CommitFailed(format!(
                    "Commit to {} lost {attempts} races with concurrent commits; retry",
                    table_display(&target.levels, &target.name)
                ));
                for pending in spent {
                    answer(self, pending, Err(lost.replicate()));
                }
                return again;
            }
            Err(err) => {
                // The pointer may or may not have moved: keep the file.
                let unknown = CatalogError::CommitStateUnknown(format!(
                    "Commit to {} has unknown outcome: {err}",
                    table_display(&target.levels, &target.name)
                ));
                answer_all(self, accepted, &unknown);
                return Vec::new();
            }
        }
        let new = NewMetadata { metadata, expired };
        self.after_commit(warehouse, &current.id, &new).await;
        self.events
            .publish(
                &target.prefix,
                &target.levels,
                &target.name,
                "commit",
                Some(&docs.metadata_location),
            )
            .await;
        let response =
            self.table_response(warehouse, Some(&docs.metadata_location), &docs.metadata);
        for pending in accepted {
            let response = copy(&response);
            answer(self, pending, response);
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::{METADATA_LOCATION, table_metadata};

    fn member(body: serde_json::Value) -> (Pending, oneshot::Receiver<Result<TableResponse>>) {
        let (reply, answer) = oneshot::channel();
        let req = serde_json::from_value(body).unwrap();
        let pending = Pending {
            req,
            key: None,
            rounds: 0,
            reply,
        };
        (pending, answer)
    }

    fn set(key: &str) -> serde_json::Value {
        serde_json::json!({"requirements": [], "updates": [
            {"action": "set-properties", "updates": {key: "v"}}
        ]})
    }

    #[test]
    fn a_group_is_one_version_holding_every_accepted_member() {
        let base = table_metadata();
        let log = base.metadata_log().len();
        let wrong_uuid = serde_json::json!({
            "requirements": [{"type": "assert-table-uuid", "uuid": "00000000-0000-0000-0000-000000000001"}],
            "updates": [{"action": "set-properties", "updates": {"refused": "v"}}]
        });
        // Removing the current schema is refused on the stored version too:
        // bad input, not a conflict.
        let invalid = serde_json::json!({"requirements": [], "updates": [
            {"action": "set-current-schema", "schema-id": 99}
        ]});
        let members = vec![
            member(set("a")).0,
            member(wrong_uuid).0,
            member(set("b")).0,
            member(invalid).0,
            member(serde_json::json!({"requirements": [], "updates": []})).0,
            member(set("c")).0,
        ];
        let group = apply_group(METADATA_LOCATION, &base, members);
        assert_eq!(group.accepted.len(), 4, "a, b, the empty commit and c");
        let refused: Vec<_> = group
            .refused
            .iter()
            .map(|(_, e)| e.status_and_type().0.as_u16())
            .collect();
        assert_eq!(refused, [409, 400]);
        let (version, _) = group.version.unwrap();
        for key in ["a", "b", "c"] {
            assert_eq!(version.properties().get(key).map(String::as_str), Some("v"));
        }
        assert!(!version.properties().contains_key("refused"));
        // One new entry in the metadata log: the stored version.
        assert_eq!(version.metadata_log().len(), log + 1);
        assert_eq!(
            version.metadata_log().last().unwrap().metadata_file,
            METADATA_LOCATION
        );
        assert!(group.accepted.iter().all(|p| p.rounds == 1));
    }

    #[test]
    fn a_member_refused_only_on_top_of_the_group_is_a_conflict() {
        let base = table_metadata();
        // Tagging snapshot 1 is valid on the stored version, but the member
        // before it in the group expired that snapshot: a conflict (409),
        // not bad input.
        let members = vec![
            member(serde_json::json!({"requirements": [], "updates": [
                {"action": "remove-snapshots", "snapshot-ids": [1]}
            ]}))
            .0,
            member(serde_json::json!({"requirements": [], "updates": [
                {"action": "set-snapshot-ref", "ref-name": "audit", "type": "tag", "snapshot-id": 1}
            ]}))
            .0,
        ];
        let group = apply_group(METADATA_LOCATION, &base, members);
        assert_eq!(group.accepted.len(), 1);
        let (_, err) = &group.refused[0];
        assert_eq!(err.status_and_type().0.as_u16(), 409, "{err}");
    }

    #[test]
    fn nothing_to_change_is_no_version() {
        let base = table_metadata();
        let members = vec![member(serde_json::json!({"requirements": [], "updates": []})).0];
        let group = apply_group(METADATA_LOCATION, &base, members);
        assert_eq!(group.accepted.len(), 1);
        assert!(group.version.is_none());
    }

    #[test]
    fn a_lane_has_one_leader_until_it_closes() {
        let groups = Arc::new(Groups::default());
        let key: LaneKey = ("w".into(), vec!["db".into()], "t".into());
        let first = groups.enqueue(&key, member(set("a")).0);
        assert_eq!(first.map(|q| q.len()), Some(1), "the first commit leads");
        assert!(groups.enqueue(&key, member(set("b")).0).is_none());
        assert!(groups.enqueue(&key, member(set("c")).0).is_none());
        // The next group: what queued meanwhile, after what is carried.
        let carried = vec![member(set("lost")).0];
        assert_eq!(groups.next(&key, carried).map(|q| q.len()), Some(3));
        // Nothing left: the lane closes, and the next commit leads anew.
        assert!(groups.next(&key, Vec::new()).is_none());
        let guard = LaneGuard {
            groups: groups.clone(),
            key: key.clone(),
            armed: false,
        };
        assert!(groups.enqueue(&key, member(set("d")).0).is_some());
        // A leader that closed its lane normally leaves the new one alone.
        drop(guard);
        assert!(groups.enqueue(&key, member(set("e")).0).is_none());
        // One that did not (a panic) removes its lane on the way out.
        drop(LaneGuard {
            groups: groups.clone(),
            key: key.clone(),
            armed: true,
        });
        assert!(groups.enqueue(&key, member(set("f")).0).is_some());
    }

    #[test]
    fn creates_and_moves_run_alone() {
        let req = |body| serde_json::from_value::<CommitTableRequest>(body).unwrap();
        assert!(groupable(&req(set("a"))));
        assert!(!groupable(&req(serde_json::json!({
            "requirements": [{"type": "assert-create"}], "updates": []
        }))));
        assert!(!groupable(&req(serde_json::json!({
            "requirements": [], "updates": [{"action": "set-location", "location": "file:///w/t2"}]
        }))));
    }
}
