//! Dapr's Jobs API (`/v1.0-alpha1/jobs/{name}`), as the sidecar client calls it.

use serde_json::json;

use crate::transport::dapr::{dapr_error, DaprClient};
use crate::transport::jobs::{Job, Signed};
use crate::transport::outgoing::PublishError;

/// How long the scheduler keeps trying a firing the app does not take (the app or daprd is
/// down, the broker is unreachable): every 5 s for 10 minutes.
const FAILURE_POLICY: (&str, u32) = ("5s", 120);

impl DaprClient {
    /// Creates (or replaces) the job `name` that fires `job`, carrying it `signed`.
    pub(crate) async fn put_job(
        &self,
        name: &str,
        job: &Job,
        signed: &Signed,
    ) -> Result<(), PublishError> {
        let now = crate::clock::now_ms();
        let mut body = json!({
            "data": signed,
            "overwrite": true,
            "failurePolicy": {"constant": {"interval": FAILURE_POLICY.0, "maxRetries": FAILURE_POLICY.1}},
        });
        match (&job.cron, job.every_ms) {
            (Some(expr), _) => body["schedule"] = json!(expr),
            (None, Some(every)) => {
                body["schedule"] = json!(format!("@every {every}ms"));
                body["dueTime"] = json!(format!("{}ms", job.first_ms.saturating_sub(now).max(1)));
            }
            (None, None) => {
                body["dueTime"] = json!(format!("{}ms", job.first_ms.saturating_sub(now).max(1)))
            }
        }
        if let (Some(n), true) = (job.times, job.recurs()) {
            body["repeats"] = json!(n);
        }
        let resp = self
            .request(reqwest::Method::POST, &job_path(name))
            .json(&body)
            .send()
            .await;
        answer(name, resp).await
    }

    /// Deletes the job `name` (daprd answers 204 whether it existed or not).
    pub(crate) async fn delete_job(&self, name: &str) -> Result<(), PublishError> {
        let resp = self
            .request(reqwest::Method::DELETE, &job_path(name))
            .send()
            .await;
        answer(name, resp).await
    }
}

fn job_path(name: &str) -> String {
    // Checked by the caller: letters, digits, `-`, `_` and `.` only.
    format!("/v1.0-alpha1/jobs/{name}")
}

async fn answer(
    name: &str,
    resp: Result<reqwest::Response, reqwest::Error>,
) -> Result<(), PublishError> {
    let target = || ("scheduler".to_owned(), format!("job {name}"));
    let resp = resp.map_err(|e| {
        let (pubsub, topic) = target();
        PublishError::Unreachable {
            pubsub,
            topic,
            message: e.to_string(),
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let (error_code, message) = dapr_error(&resp.text().await.unwrap_or_default());
    let (pubsub, topic) = target();
    Err(PublishError::Rejected {
        pubsub,
        topic,
        status: status.as_u16(),
        error_code,
        message,
    })
}
