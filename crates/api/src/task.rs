//! Tasks: `GET /v1/tasks/{txn}` (every hop, admin) and
//! `POST /v1/tasks/{txn}/complete`.

use agentauth_core::AuditRecord;
use serde::{Deserialize, Serialize};

/// The answer of `GET /v1/tasks/{txn}`: the task's audit records in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// The task.
    pub txn: String,
    /// Whether it has been revoked or completed.
    pub revoked: bool,
    /// Every audit record of the task, in chain order.
    pub hops: Vec<AuditRecord>,
}

/// The answer of `POST /v1/tasks/{txn}/complete`: the task is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCompletion {
    /// The task.
    pub txn: String,
    /// Always `true`: every token of the task stops working.
    pub revoked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::pinned;

    #[test]
    fn a_task_lists_its_hops() {
        pinned(
            &TaskView {
                txn: "txn-1".into(),
                revoked: false,
                hops: vec![],
            },
            r#"
{
  "txn": "txn-1",
  "revoked": false,
  "hops": []
}"#,
        );
    }

    #[test]
    fn a_completion_says_the_task_is_revoked() {
        pinned(
            &TaskCompletion {
                txn: "txn-1".into(),
                revoked: true,
            },
            r#"
{
  "txn": "txn-1",
  "revoked": true
}"#,
        );
    }
}
