//! Custom domains and the app that claimed each. A domain belongs to the
//! first app that deploys with it until that app releases it (a live
//! deploy without it, or destroy); `<other-app>.<base>` is never
//! claimable, it is that app's own address.

use sqlx::Row;

use super::{is_unique_violation, now_ms, q, Store, StoreError};

impl Store {
    /// Claims `domains` for `app`, all or none. Fails with
    /// [`StoreError::DomainTaken`] naming the first domain another app holds.
    pub async fn claim_domains(&self, app: &str, domains: &[String]) -> Result<(), StoreError> {
        if domains.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await.map_err(q("claiming domains"))?;
        for domain in domains {
            let owner: Option<String> = sqlx::query("SELECT app FROM domains WHERE domain = $1")
                .bind(domain)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q("claiming domains"))?
                .map(|r| r.get(0));
            match owner {
                Some(owner) if owner == app => {}
                Some(owner) => {
                    return Err(StoreError::DomainTaken {
                        domain: domain.clone(),
                        owner,
                    })
                }
                None => {
                    let r = sqlx::query(
                        "INSERT INTO domains (domain, app, claimed_at) VALUES ($1, $2, $3)",
                    )
                    .bind(domain)
                    .bind(app)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await;
                    match r {
                        Ok(_) => {}
                        // Claimed concurrently by another node's deploy.
                        Err(e) if is_unique_violation(&e) => {
                            return Err(StoreError::DomainTaken {
                                domain: domain.clone(),
                                owner: "another app".into(),
                            })
                        }
                        Err(e) => return Err(q("claiming domains")(e)),
                    }
                }
            }
        }
        tx.commit().await.map_err(q("claiming domains"))?;
        Ok(())
    }

    /// Releases `app`'s domains that are not in `keep` (a deploy went live
    /// without them).
    pub async fn release_domains_except(
        &self,
        app: &str,
        keep: &[String],
    ) -> Result<u64, StoreError> {
        let mut released = 0;
        for domain in self.domains_of(app).await? {
            if keep.contains(&domain) {
                continue;
            }
            released += sqlx::query("DELETE FROM domains WHERE domain = $1 AND app = $2")
                .bind(&domain)
                .bind(app)
                .execute(&self.pool)
                .await
                .map_err(q("releasing a domain"))?
                .rows_affected();
        }
        Ok(released)
    }

    /// The domains `app` holds.
    pub async fn domains_of(&self, app: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT domain FROM domains WHERE app = $1 ORDER BY domain")
            .bind(app)
            .fetch_all(&self.pool)
            .await
            .map_err(q("listing domains"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
