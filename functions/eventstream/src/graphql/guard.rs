//! Field-level authorisation: each field names the role it needs, and a caller without it gets a
//! `FORBIDDEN` error for that field alone.

use async_graphql::{Context, Guard};

use super::error::{GqlError, code};
use crate::{auth::Claims, domain::Role};

/// Lets a field resolve only for a caller whose token carries `0`.
pub struct RoleGuard(pub Role);

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let allowed = ctx.data_opt::<Claims>().is_some_and(|caller| caller.has_role(self.0));
        if allowed {
            return Ok(());
        }
        Err(GqlError::new(
            code::FORBIDDEN,
            format!("this field needs the {} role, which the token does not carry", self.0),
        )
        .into())
    }
}
