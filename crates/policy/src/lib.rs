//! agentauth's policy-as-code: Cedar policy sets validated against the schema
//! in `policies/schema.cedarschema`, and decisions for one permission at a
//! time, with the policies that determined them and whether a person must
//! approve first.
//!
//! Registry permissions stay the upper bound of what an agent may ever hold;
//! a policy set decides, per request and context, what it may do now. Deny
//! overrides permit, and no matching permit means deny.

mod decision;
mod entities;
mod error;
mod schema;
mod scope;
mod set;

// The public interface is:
pub use decision::{
    AgentFacts, Clock, Decision, Outcome, Query, RequestContext, Target, entity_name,
};
pub use error::{Cause, PolicyError, Problem, RequestError};
pub use schema::{SCHEMA, action_group};
pub use set::{MAX_FILE_BYTES, MAX_FILES, MAX_SET_BYTES, PolicyFile, PolicySet, PolicySummary};
