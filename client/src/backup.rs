//! Fetching a backup from a running validator (`GET /api/v11/admin/backup`, an admin token).

use crate::http::Client;
use bytes::Bytes;

/// Media type of a backup body (the engine's `backup::BACKUP_MEDIA_TYPE`).
const BACKUP_MEDIA_TYPE: &str = "application/vnd.aurigraph.backup";

/// Largest backup body accepted: it is held in memory while it is checked and written.
pub const BACKUP_BYTES_MAX: usize = 4 << 30;

/// Downloads a backup from `node` with `admin_token`. Builds its own tokio runtime: call it
/// outside any runtime.
pub fn fetch(node: &str, admin_token: &str) -> Result<Bytes, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the client runtime: {e}"))?;
    runtime.block_on(async {
        let client = Client::new(node)
            .and_then(|c| c.with_bearer(admin_token))
            .map_err(|e| e.to_string())?;
        client
            .get_bytes("/api/v11/admin/backup", BACKUP_MEDIA_TYPE, BACKUP_BYTES_MAX)
            .await
            .map_err(|e| e.to_string())
    })
}
