//! Whether a failed or unwanted attempt is sent again, and how: a pure function of what
//! happened, the rule's [`RetryPolicy`] and what the request has left.
//!
//! Two kinds of "again" are told apart:
//! - the transport's own recovery, which is free and never counted: a pooled
//!   connection the endpoint had closed (the request never left, or a bodiless
//!   idempotent request broke on it), sent once more on a fresh connection to the
//!   same endpoint, as nginx does for keep-alive connections; and the first failed
//!   connect, retried on another endpoint for every route since nothing was sent;
//! - the rule's policy: further attempts on other endpoints (or, when the policy
//!   reuses endpoints, on those already tried once none is left) after a connect
//!   failure, a reset, a timeout or a listed status, each spending one of its attempts,
//!   made after the policy's backoff and counted in `portico_upstream_retries_total`.

use std::time::Duration;

use crate::table::RetryPolicy;

/// What one attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No connection could be made; nothing was sent. `nth` counts the request's connect
    /// failures so far, this one included.
    ConnectFailed { nth: u32 },
    /// No response head within the attempt's time. `overall` when the request's own
    /// deadline (retries included) has passed too.
    TimedOut { overall: bool },
    /// A response head with this status.
    Status(u16),
    /// The connection closed before the request left. `reused`: it came from the pool.
    Unsent { reused: bool },
    /// The connection broke after the request (or part of it) left. `reused`: it came
    /// from the pool; `resendable`: a copy of the request may go again (handed back
    /// bodiless and idempotent, or kept for replay).
    Broken { reused: bool, resendable: bool },
}

/// Why the rule's policy sent a request again: the `reason` label of
/// `portico_upstream_retries_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    ConnectFailure,
    Reset,
    Timeout,
    Status,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::ConnectFailure => "connect-failure",
            Reason::Reset => "reset",
            Reason::Timeout => "timeout",
            Reason::Status => "status",
        }
    }
}

/// What the request has left to try with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Policy attempts left.
    pub attempts: u32,
    /// A bodiless request whose copy may be replayed under the rule's policy (methods
    /// that are not idempotent only when the rule opts in).
    pub replayable: bool,
    /// An endpoint of the backend not tried yet, other than this attempt's.
    pub others_left: bool,
    /// The free resend on a fresh connection has been used.
    pub stale_resent: bool,
    /// Time until the request's own deadline (Gateway API's `timeouts.request`), if
    /// it has one.
    pub time_left: Option<Duration>,
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Stop: answer with this attempt's response or failure.
    Stop,
    /// Send once more on a fresh connection to the same endpoint, free.
    Resend { stale: bool },
    /// Send to an endpoint not tried yet (or, under a policy that reuses endpoints and
    /// with none left, to one tried already) once `after` has passed; `spent` is the
    /// policy attempt this costs, if any.
    Retry { spent: Option<Reason>, after: Duration },
}

/// The decision after one attempt.
pub fn decide(policy: Option<&RetryPolicy>, budget: Budget, outcome: Outcome) -> Decision {
    let allows = |on: fn(&RetryPolicy) -> bool| policy.is_some_and(on) && budget.attempts > 0;
    // Where a policy retry may go: an endpoint not tried yet, or any under a policy that
    // reuses them.
    let somewhere = budget.others_left || policy.is_some_and(|r| r.reuse_endpoints);
    // A policy retry waits the backoff first; one that could not start before the
    // request's deadline is not made, and this attempt's answer stands.
    let spend = |reason| {
        let after = policy.and_then(|r| r.backoff).unwrap_or_default();
        match budget.time_left {
            Some(left) if left <= after => Decision::Stop,
            _ => Decision::Retry {
                spent: Some(reason),
                after,
            },
        }
    };
    // A policy retry that replays the request needs a copy of it.
    let replay = |on: fn(&RetryPolicy) -> bool, reason| {
        if allows(on) && budget.replayable && somewhere {
            spend(reason)
        } else {
            Decision::Stop
        }
    };
    match outcome {
        Outcome::ConnectFailed { nth } if nth <= 1 && budget.others_left => Decision::Retry {
            spent: None,
            after: Duration::ZERO,
        },
        Outcome::ConnectFailed { .. } if allows(|r| r.on_connect_failure) && somewhere => spend(Reason::ConnectFailure),
        Outcome::ConnectFailed { .. } => Decision::Stop,
        Outcome::TimedOut { overall: true } => Decision::Stop,
        Outcome::TimedOut { overall: false } => replay(|r| r.on_timeout, Reason::Timeout),
        Outcome::Status(code) if policy.is_some_and(|r| r.codes.contains(&code)) => replay(|_| true, Reason::Status),
        Outcome::Status(_) => Decision::Stop,
        Outcome::Unsent { reused: true } => Decision::Resend { stale: false },
        // Never sent, so even a request with a body may go again.
        Outcome::Unsent { reused: false } if allows(|r| r.on_reset) && somewhere => spend(Reason::Reset),
        Outcome::Unsent { reused: false } => Decision::Stop,
        Outcome::Broken {
            reused: true,
            resendable: true,
        } if !budget.stale_resent => Decision::Resend { stale: true },
        Outcome::Broken { .. } => replay(|r| r.on_reset, Reason::Reset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            on_connect_failure: true,
            on_reset: true,
            on_timeout: true,
            codes: vec![503],
            per_try_timeout: None,
            non_idempotent: false,
            backoff: None,
            reuse_endpoints: false,
        }
    }

    fn budget() -> Budget {
        Budget {
            attempts: 2,
            replayable: true,
            others_left: true,
            stale_resent: false,
            time_left: None,
        }
    }

    /// Every route retries its first failed connect elsewhere for free: nothing was sent.
    #[test]
    fn first_connect_failure_is_retried_free_without_a_policy() {
        let d = decide(None, Budget::default().with_others(), Outcome::ConnectFailed { nth: 1 });
        assert_eq!(
            d,
            Decision::Retry {
                spent: None,
                after: Duration::ZERO
            }
        );
    }

    /// Without a policy, a second connect failure is the answer (502).
    #[test]
    fn second_connect_failure_stops_without_a_policy() {
        let d = decide(None, Budget::default().with_others(), Outcome::ConnectFailed { nth: 2 });
        assert_eq!(d, Decision::Stop);
    }

    /// A policy that retries connect failures spends an attempt from the second on.
    #[test]
    fn later_connect_failures_spend_policy_attempts() {
        let p = policy();
        let d = decide(Some(&p), budget(), Outcome::ConnectFailed { nth: 2 });
        assert_eq!(
            d,
            Decision::Retry {
                spent: Some(Reason::ConnectFailure),
                after: Duration::ZERO
            }
        );
        let spent = Budget {
            attempts: 0,
            ..budget()
        };
        assert_eq!(
            decide(Some(&p), spent, Outcome::ConnectFailed { nth: 2 }),
            Decision::Stop
        );
    }

    /// With no endpoint left to try, nothing is retried, not even the free connect retry.
    #[test]
    fn no_other_endpoint_stops() {
        let alone = Budget {
            others_left: false,
            ..budget()
        };
        let p = policy();
        for outcome in [
            Outcome::ConnectFailed { nth: 1 },
            Outcome::TimedOut { overall: false },
            Outcome::Status(503),
            Outcome::Unsent { reused: false },
            Outcome::Broken {
                reused: false,
                resendable: true,
            },
        ] {
            assert_eq!(decide(Some(&p), alone, outcome), Decision::Stop, "{outcome:?}");
        }
    }

    /// A timed-out attempt is replayed elsewhere only when the rule says so, a copy
    /// exists and the request's own deadline has not passed.
    #[test]
    fn timeouts() {
        let p = policy();
        assert_eq!(
            decide(Some(&p), budget(), Outcome::TimedOut { overall: false }),
            Decision::Retry {
                spent: Some(Reason::Timeout),
                after: Duration::ZERO
            }
        );
        assert_eq!(
            decide(Some(&p), budget(), Outcome::TimedOut { overall: true }),
            Decision::Stop
        );
        let no_timeouts = RetryPolicy {
            on_timeout: false,
            ..policy()
        };
        assert_eq!(
            decide(Some(&no_timeouts), budget(), Outcome::TimedOut { overall: false }),
            Decision::Stop
        );
        let streamed = Budget {
            replayable: false,
            ..budget()
        };
        assert_eq!(
            decide(Some(&p), streamed, Outcome::TimedOut { overall: false }),
            Decision::Stop
        );
        assert_eq!(
            decide(None, budget(), Outcome::TimedOut { overall: false }),
            Decision::Stop
        );
    }

    /// Only the listed statuses are retried; any other response is the answer.
    #[test]
    fn statuses() {
        let p = policy();
        assert_eq!(
            decide(Some(&p), budget(), Outcome::Status(503)),
            Decision::Retry {
                spent: Some(Reason::Status),
                after: Duration::ZERO
            }
        );
        assert_eq!(decide(Some(&p), budget(), Outcome::Status(500)), Decision::Stop);
        assert_eq!(decide(Some(&p), budget(), Outcome::Status(200)), Decision::Stop);
        assert_eq!(decide(None, budget(), Outcome::Status(503)), Decision::Stop);
    }

    /// A pooled connection the endpoint had closed before the request left costs
    /// nothing: the request goes again on a fresh connection.
    #[test]
    fn unsent_on_a_pooled_connection_is_resent_free() {
        assert_eq!(
            decide(None, Budget::default(), Outcome::Unsent { reused: true }),
            Decision::Resend { stale: false }
        );
    }

    /// A fresh connection closed before the request left: a policy that retries resets
    /// sends it elsewhere (body and all: nothing was read from it); else 502.
    #[test]
    fn unsent_on_a_fresh_connection() {
        let p = policy();
        let streamed = Budget {
            replayable: false,
            ..budget()
        };
        assert_eq!(
            decide(Some(&p), streamed, Outcome::Unsent { reused: false }),
            Decision::Retry {
                spent: Some(Reason::Reset),
                after: Duration::ZERO
            }
        );
        assert_eq!(
            decide(None, budget(), Outcome::Unsent { reused: false }),
            Decision::Stop
        );
    }

    /// A reused connection that breaks under a resendable request gets one free resend
    /// (nginx's keep-alive recovery); the second break is the policy's to retry.
    #[test]
    fn broken_reused_connection_is_resent_once() {
        let broken = Outcome::Broken {
            reused: true,
            resendable: true,
        };
        assert_eq!(decide(None, budget(), broken), Decision::Resend { stale: true });
        let resent = Budget {
            stale_resent: true,
            ..budget()
        };
        assert_eq!(decide(None, resent, broken), Decision::Stop);
        let p = policy();
        assert_eq!(
            decide(Some(&p), resent, broken),
            Decision::Retry {
                spent: Some(Reason::Reset),
                after: Duration::ZERO
            }
        );
    }

    /// A request whose body streamed to the endpoint is never sent again.
    #[test]
    fn broken_with_a_streamed_body_stops() {
        let p = policy();
        let streamed = Budget {
            replayable: false,
            ..budget()
        };
        let broken = Outcome::Broken {
            reused: true,
            resendable: false,
        };
        assert_eq!(decide(Some(&p), streamed, broken), Decision::Stop);
    }

    /// Gateway API's policy (`HTTPRouteRetry`): connection errors and the listed codes,
    /// retried on the endpoints already tried when none is left.
    fn gateway_policy(attempts: u32, backoff: Option<Duration>) -> RetryPolicy {
        RetryPolicy {
            attempts,
            on_connect_failure: true,
            on_reset: true,
            on_timeout: true,
            codes: vec![500, 502, 503, 504],
            non_idempotent: true,
            backoff,
            reuse_endpoints: true,
            ..RetryPolicy::default()
        }
    }

    /// A backend with one endpoint: under a policy that reuses endpoints the retry goes
    /// to that endpoint again (the conformance suite's retry backend has one replica);
    /// under one that does not, nothing is retried.
    #[test]
    fn one_endpoint_is_retried_when_the_policy_reuses_endpoints() {
        let alone = Budget {
            others_left: false,
            ..budget()
        };
        let p = gateway_policy(2, None);
        let retried = |reason| Decision::Retry {
            spent: Some(reason),
            after: Duration::ZERO,
        };
        assert_eq!(decide(Some(&p), alone, Outcome::Status(500)), retried(Reason::Status));
        assert_eq!(
            decide(Some(&p), alone, Outcome::TimedOut { overall: false }),
            retried(Reason::Timeout)
        );
        assert_eq!(
            decide(
                Some(&p),
                alone,
                Outcome::Broken {
                    reused: false,
                    resendable: true
                }
            ),
            retried(Reason::Reset)
        );
        assert_eq!(
            decide(Some(&p), alone, Outcome::Unsent { reused: false }),
            retried(Reason::Reset)
        );
        // The first failed connect is free only when another endpoint is left; on the
        // same one it is the policy's, and spends an attempt.
        assert_eq!(
            decide(Some(&p), alone, Outcome::ConnectFailed { nth: 1 }),
            retried(Reason::ConnectFailure)
        );
        assert_eq!(decide(Some(&policy()), alone, Outcome::Status(503)), Decision::Stop);
        assert_eq!(decide(None, alone, Outcome::ConnectFailed { nth: 1 }), Decision::Stop);
    }

    /// `attempts` counts retries, not requests (HTTPRouteRetry: "the maximum number of
    /// times an individual request ... should be retried"): with 3, a backend that keeps
    /// answering 500 gets 4 requests, and the fourth answer is the client's.
    #[test]
    fn attempts_count_retries() {
        let p = gateway_policy(3, None);
        let mut b = Budget {
            attempts: p.attempts,
            others_left: false,
            ..budget()
        };
        let mut requests = 1;
        while let Decision::Retry { spent, .. } = decide(Some(&p), b, Outcome::Status(500)) {
            assert_eq!(spent, Some(Reason::Status));
            b.attempts -= 1;
            requests += 1;
        }
        assert_eq!(requests, 4);
    }

    /// Every policy retry waits the backoff; the transport's free ones do not.
    #[test]
    fn policy_retries_wait_the_backoff() {
        let p = gateway_policy(2, Some(Duration::from_millis(250)));
        assert_eq!(
            decide(Some(&p), budget(), Outcome::Status(503)),
            Decision::Retry {
                spent: Some(Reason::Status),
                after: Duration::from_millis(250)
            }
        );
        assert_eq!(
            decide(Some(&p), budget(), Outcome::ConnectFailed { nth: 2 }),
            Decision::Retry {
                spent: Some(Reason::ConnectFailure),
                after: Duration::from_millis(250)
            }
        );
        assert_eq!(
            decide(Some(&p), budget(), Outcome::ConnectFailed { nth: 1 }),
            Decision::Retry {
                spent: None,
                after: Duration::ZERO
            }
        );
        assert_eq!(
            decide(Some(&p), budget(), Outcome::Unsent { reused: true }),
            Decision::Resend { stale: false }
        );
    }

    /// HTTPRouteRetry.backoff: with a request timeout, "the entire duration of the
    /// initial request and any retry attempts MUST not exceed the Request timeout": a
    /// retry whose backoff would end at or past the deadline is not made, and the
    /// attempt's own answer stands.
    #[test]
    fn no_retry_whose_backoff_passes_the_deadline() {
        let p = gateway_policy(2, Some(Duration::from_millis(250)));
        let short = Budget {
            time_left: Some(Duration::from_millis(250)),
            ..budget()
        };
        assert_eq!(decide(Some(&p), short, Outcome::Status(503)), Decision::Stop);
        let long = Budget {
            time_left: Some(Duration::from_millis(251)),
            ..budget()
        };
        assert_eq!(
            decide(Some(&p), long, Outcome::Status(503)),
            Decision::Retry {
                spent: Some(Reason::Status),
                after: Duration::from_millis(250)
            }
        );
        // Without a backoff, any time left is enough; none is not.
        let at_once = gateway_policy(2, None);
        let none_left = Budget {
            time_left: Some(Duration::ZERO),
            ..budget()
        };
        assert_eq!(decide(Some(&at_once), none_left, Outcome::Status(503)), Decision::Stop);
    }

    /// A request with a body that streamed to the endpoint is not replayed, whatever
    /// the method policy: nothing kept a copy.
    #[test]
    fn gateway_policy_does_not_replay_a_streamed_body() {
        let p = gateway_policy(2, None);
        let streamed = Budget {
            replayable: false,
            ..budget()
        };
        assert_eq!(decide(Some(&p), streamed, Outcome::Status(500)), Decision::Stop);
    }

    impl Budget {
        fn with_others(self) -> Budget {
            Budget {
                others_left: true,
                ..self
            }
        }
    }
}
