//! A connection's outcome from the flags each side sent and whether the other side answered.

use flowd_common::{parse::IPPROTO_TCP, TCP_FIN, TCP_RST, TCP_SYN};

use super::Outcome;

/// ICMP port unreachable: nothing listens there.
const PORT_UNREACHABLE: [u16; 2] = [0x0303, 0x0104];

/// `request_flags`/`reply_flags` are unions over the connection's life; `answered` says whether
/// the destination ever sent a packet; `overdue` whether the request has waited longer than the
/// unanswered timeout; `icmp_error` the ICMP destination-unreachable answer, if any.
pub fn outcome(
    protocol: u8,
    request_flags: u16,
    reply_flags: u16,
    answered: bool,
    overdue: bool,
    icmp_error: u16,
) -> Outcome {
    if icmp_error != 0 {
        return if PORT_UNREACHABLE.contains(&icmp_error) {
            Outcome::Refused
        } else {
            Outcome::Unreachable
        };
    }
    if !answered {
        return if overdue {
            Outcome::Unanswered
        } else {
            Outcome::RequestOnly
        };
    }
    if protocol != IPPROTO_TCP {
        return Outcome::Answered;
    }
    let has = |flags: u16, bit: u16| flags & bit != 0;
    let handshake = has(request_flags, TCP_SYN) && has(reply_flags, TCP_SYN);
    if has(reply_flags, TCP_RST) && has(request_flags, TCP_SYN) && !has(reply_flags, TCP_SYN) {
        return Outcome::Refused;
    }
    if has(request_flags | reply_flags, TCP_RST) {
        return Outcome::Reset;
    }
    if handshake && has(request_flags | reply_flags, TCP_FIN) {
        return Outcome::Closed;
    }
    if handshake {
        return Outcome::Established;
    }
    Outcome::Answered
}

#[cfg(test)]
mod tests {
    use flowd_common::{parse::IPPROTO_UDP, TCP_ACK, TCP_PSH};

    use super::*;

    const SYN_ACK: u16 = TCP_SYN | TCP_ACK;

    #[test]
    fn tcp_truth_table() {
        let cases = [
            (
                TCP_SYN | TCP_ACK,
                SYN_ACK,
                true,
                false,
                Outcome::Established,
            ),
            (
                TCP_SYN | TCP_ACK | TCP_FIN,
                SYN_ACK | TCP_FIN,
                true,
                false,
                Outcome::Closed,
            ),
            (
                TCP_SYN | TCP_ACK | TCP_RST,
                SYN_ACK,
                true,
                false,
                Outcome::Reset,
            ),
            (
                TCP_SYN | TCP_ACK,
                SYN_ACK | TCP_RST,
                true,
                false,
                Outcome::Reset,
            ),
            (TCP_SYN, TCP_RST | TCP_ACK, true, false, Outcome::Refused),
            (TCP_SYN, 0, false, false, Outcome::RequestOnly),
            (TCP_SYN, 0, false, true, Outcome::Unanswered),
            // Joined mid-connection: no handshake seen.
            (TCP_ACK | TCP_PSH, TCP_ACK, true, false, Outcome::Answered),
        ];
        for (request, reply, answered, overdue, expected) in cases {
            assert_eq!(
                outcome(IPPROTO_TCP, request, reply, answered, overdue, 0),
                expected,
                "request {request:#x} reply {reply:#x} answered {answered} overdue {overdue}"
            );
        }
    }

    #[test]
    fn udp_is_answered_or_not() {
        assert_eq!(
            outcome(IPPROTO_UDP, 0, 0, true, false, 0),
            Outcome::Answered
        );
        assert_eq!(
            outcome(IPPROTO_UDP, 0, 0, false, false, 0),
            Outcome::RequestOnly
        );
        assert_eq!(
            outcome(IPPROTO_UDP, 0, 0, false, true, 0),
            Outcome::Unanswered
        );
    }

    #[test]
    fn icmp_errors_decide_the_outcome() {
        assert_eq!(
            outcome(IPPROTO_UDP, 0, 0, false, true, 0x0303),
            Outcome::Refused
        );
        assert_eq!(
            outcome(IPPROTO_UDP, 0, 0, false, true, 0x0104),
            Outcome::Refused
        );
        assert_eq!(
            outcome(IPPROTO_UDP, 0, 0, false, false, 0x0301),
            Outcome::Unreachable
        );
    }
}
