//! Turning a `GetFlowsRequest` into a subscription, refusing what cannot be answered.

use tonic::Status;

use crate::{
    proto::v1 as pb,
    query::FlowMatcher,
    store::{time_ns, Backlog, Range},
};

/// What a GetFlows call subscribes to: stored history, whether to follow, and the filter.
pub struct Subscription {
    pub backlog: Backlog,
    pub follow: bool,
    pub watermarks: bool,
    pub matcher: FlowMatcher,
}

fn timestamp(field: &str, ts: &Option<pbjson_types::Timestamp>) -> Result<Option<u64>, Status> {
    match ts {
        None => Ok(None),
        Some(ts) if ts.seconds < 0 || !(0..1_000_000_000).contains(&ts.nanos) => {
            Err(Status::invalid_argument(format!(
                "{field}: {}s {}ns is not a valid time after 1970",
                ts.seconds, ts.nanos
            )))
        }
        Some(ts) => Ok(Some(time_ns(ts))),
    }
}

pub fn parse(request: &pb::GetFlowsRequest) -> Result<Subscription, Status> {
    let since = timestamp("since", &request.since)?;
    let until = timestamp("until", &request.until)?;
    if let (Some(since), Some(until)) = (since, until) {
        if until <= since {
            return Err(Status::invalid_argument(
                "until must be later than since: the time range is empty",
            ));
        }
    }
    if until.is_some() && request.follow {
        return Err(Status::invalid_argument(
            "until and follow contradict each other: following never ends",
        ));
    }
    if request.after_cursor.is_some() && (since.is_some() || until.is_some()) {
        return Err(Status::invalid_argument(
            "after_cursor resumes a stream; it cannot be combined with since or until",
        ));
    }
    if !request.resume_token.is_empty() {
        return Err(Status::invalid_argument(
            "resume_token is the relay's position across nodes; an agent resumes with \
             after_cursor (the cursor of the last flow processed)",
        ));
    }
    let matcher = FlowMatcher::new(&request.allow, &request.deny)
        .map_err(|err| Status::invalid_argument(err.to_string()))?;
    let backlog = if let Some(after) = request.after_cursor {
        Backlog::Range(Range::AfterCursor(after))
    } else if since.is_some() || until.is_some() {
        let (since_ns, until_ns) = (since.unwrap_or(0), until.unwrap_or(u64::MAX));
        Backlog::Range(if matcher.only_not_forwarded() {
            Range::NotForwarded { since_ns, until_ns }
        } else {
            Range::EndTime { since_ns, until_ns }
        })
    } else if request.last > 0 {
        Backlog::Last(usize::try_from(request.last).unwrap_or(usize::MAX))
    } else {
        Backlog::None
    };
    Ok(Subscription {
        backlog,
        follow: request.follow,
        watermarks: request.watermarks,
        matcher,
    })
}

/// The window a GetGraph (or RecommendPolicy) request covers, as [since, until) in nanoseconds:
/// until defaults to `now_ns`, since to graph::DEFAULT_WINDOW before until.
pub fn window(
    since: &Option<pbjson_types::Timestamp>,
    until: &Option<pbjson_types::Timestamp>,
    now_ns: u64,
) -> Result<(u64, u64), Status> {
    let until = timestamp("until", until)?.unwrap_or(now_ns);
    let default = crate::graph::DEFAULT_WINDOW.as_nanos() as u64;
    let since = timestamp("since", since)?.unwrap_or(until.saturating_sub(default));
    if until <= since {
        return Err(Status::invalid_argument(
            "until must be later than since: the time range is empty",
        ));
    }
    Ok((since, until))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64) -> Option<pbjson_types::Timestamp> {
        Some(pbjson_types::Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn impossible_requests_are_invalid_arguments() {
        let cases = [
            pb::GetFlowsRequest {
                since: ts(100),
                until: ts(50),
                ..Default::default()
            },
            pb::GetFlowsRequest {
                until: ts(50),
                follow: true,
                ..Default::default()
            },
            pb::GetFlowsRequest {
                after_cursor: Some(3),
                since: ts(1),
                ..Default::default()
            },
            pb::GetFlowsRequest {
                since: Some(pbjson_types::Timestamp {
                    seconds: 1,
                    nanos: 2_000_000_000,
                }),
                ..Default::default()
            },
            pb::GetFlowsRequest {
                allow: vec![pb::FlowFilter {
                    ip: vec!["300.1.1.1".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ];
        for request in cases {
            let status = parse(&request).err().expect("refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{request:?}");
            assert!(!status.message().is_empty());
        }
    }

    #[test]
    fn backlog_selection() {
        let q = parse(&pb::GetFlowsRequest {
            last: 5,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.backlog, Backlog::Last(5));
        let q = parse(&pb::GetFlowsRequest {
            after_cursor: Some(9),
            follow: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.backlog, Backlog::Range(Range::AfterCursor(9)));
        let q = parse(&pb::GetFlowsRequest {
            since: ts(10),
            allow: vec![pb::FlowFilter {
                verdict: vec![pb::Verdict::Dropped as i32, pb::Verdict::Denied as i32],
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            q.backlog,
            Backlog::Range(Range::NotForwarded {
                since_ns: 10_000_000_000,
                until_ns: u64::MAX
            })
        );
        let q = parse(&pb::GetFlowsRequest::default()).unwrap();
        assert_eq!(q.backlog, Backlog::None);
    }
}
