//! One call's attempts: starting engines in order, hedging, judging each answer, settling the
//! losers and the breaker outcomes (the policies (4)-(6) of `LoadedModel::run_with`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use inference_api::{CancelToken, Error, ErrorKind, IoSchema, NamedTensors, Result, RunTimings};
use telemetry::Latencies;

use crate::LoadedModel;
use crate::breaker::{Outcome, Permit};
use crate::deadline::{GaveUp, Reply, SubmitError, Ticket};

impl LoadedModel {
    /// When the next engine `j` must start for its answer to fit: the deadline minus a reserve
    /// of 1.5 times its observed p99 plus 5 ms (the model's SLA stands in for the p99 before it
    /// has answered), at least a tenth of the budget (room for the scheduler on a loaded
    /// machine) and at most half (the engine working on the call keeps half the budget).
    pub(crate) fn hedge_at(&self, j: usize, call: &Call<'_>) -> Instant {
        let m = &*self.inner;
        let reserve = match m.served[j].attempt_est.p99().or(m.sla) {
            Some(p99) => p99 + p99 / 2 + Duration::from_millis(5),
            None => call.budget / 10,
        };
        let reserve = reserve.clamp(call.budget / 10, call.budget / 2);
        call.deadline.checked_sub(reserve).unwrap_or(call.started)
    }

    /// Policies (4)-(5) for the next engine in order that can take the call: breaker
    /// admission and the hand-off. Engines that cannot (breaker open, quarantined, queue
    /// full) are recorded as fallbacks and skipped, except that the last engine in the order
    /// is let through its open breaker unless the routing is `Require`
    /// ([`crate::CircuitBreaker::bypass`]). `hedge` marks an engine started beside others
    /// still working.
    pub(crate) fn start_next<'s>(
        &'s self,
        call: &Call<'_>,
        race: &mut Race<'s>,
        hedge: bool,
    ) -> Start {
        let m = &*self.inner;
        while let Some(&j) = race.order.get(race.pos) {
            race.pos += 1;
            let s = &m.served[j];
            let engine = &s.lane.engine_name;
            if let Some((from, kind, msg)) = race.fallback.take() {
                let from = &m.served[from].lane.engine_name;
                m.model_series.record_fallback(from, engine, kind);
                race.first_reason.get_or_insert_with(|| format!("{from}: {msg}"));
            } else if hedge && let Some(p) = race.pending.first() {
                let from = &m.served[p.i].lane.engine_name;
                let waited = p.handed.elapsed().as_millis();
                m.model_series.record_fallback(from, engine, "hedge");
                m.model_series.record_hedge();
                race.first_reason.get_or_insert_with(|| {
                    format!("{from}: no answer after {waited} ms, hedged on `{engine}`")
                });
            }
            // The call's `infer.run` span names the last engine tried.
            call.span.record("engine", engine.as_str());
            let permit = match s.breaker.try_acquire() {
                Ok(p) => p,
                Err(_) if race.may_bypass && race.pos == race.order.len() => {
                    // The last engine the call can use: every other one is out (breaker
                    // open, quarantined, failed) or still working late on it. Refusing would
                    // refuse a call this engine may still answer, slowly or not: let it
                    // through, uncounted by its breaker.
                    s.series.record_breaker_bypass();
                    s.breaker.bypass()
                }
                Err(rej) => {
                    s.series.record_circuit_open();
                    let e = Error::CircuitOpen {
                        engine: engine.clone(),
                        retry_after_ms: rej.retry_after.as_millis() as u64,
                    };
                    race.skip(j, "circuit_open", e);
                    continue;
                }
            };
            if Instant::now() >= call.deadline {
                permit.cancel();
                return Start::End(Error::Timeout {
                    engine: engine.clone(),
                    deadline_ms: call.budget.as_millis() as u64,
                    elapsed_ms: call.started.elapsed().as_millis() as u64,
                });
            }
            if call.cancel.is_some_and(CancelToken::is_cancelled) {
                permit.cancel();
                return Start::End(Error::Cancelled { engine: engine.clone() });
            }
            let slot = race.next_slot;
            race.next_slot += 1;
            let handed = Instant::now();
            match s.lane.submit(
                &call.inputs,
                call.deadline,
                call.budget,
                call.cancel,
                slot,
                &race.tx,
            ) {
                Ok(ticket) => {
                    let hedge = hedge && !race.pending.is_empty();
                    race.pending.push(InFlight { i: j, slot, ticket, permit, handed, hedge });
                    return Start::Started;
                }
                Err(SubmitError::Quarantined(msg)) => {
                    permit.cancel();
                    race.fallback = Some((j, "quarantined", msg.clone()));
                    race.last_err = Some(Error::Unavailable(msg));
                }
                Err(SubmitError::Full) => {
                    permit.cancel();
                    s.series.record_overloaded();
                    let e = Error::Overloaded {
                        model: m.name.clone(),
                        capacity: m.admission.capacity(),
                    };
                    race.skip(j, "overloaded", e);
                }
            }
        }
        Start::Exhausted
    }

    /// Policy (6): what one answer means (served, the call ends, or the next engine), with
    /// the outcome settled on the engine's breaker and series.
    pub(crate) fn judge(&self, p: InFlight<'_>, reply: Reply, call: &Call<'_>) -> Judged {
        let m = &*self.inner;
        let s = &m.served[p.i];
        let engine = &s.lane.engine_name;
        let attempt = p.handed.elapsed();
        let caller_cancelled = call.cancel.is_some_and(CancelToken::is_cancelled);
        if !reply.ran {
            // Never reached the engine (the deadline passed or the caller left while it
            // waited in the queue): not the engine's outcome.
            p.permit.cancel();
            let e = match reply.result {
                Err(e) => e,
                Ok(_) => Error::Runtime(format!("engine `{engine}` answered a job it skipped")),
            };
            let kind = if e.kind() == ErrorKind::Unavailable { "quarantined" } else { "queue" };
            return if caller_cancelled { Judged::End(e) } else { Judged::next(kind, e) };
        }
        let checked =
            reply.result.and_then(|(out, t)| check_outputs(&m.schema, engine, out).map(|o| (o, t)));
        match checked {
            Ok((out, timings)) => {
                // Slow means the engine's own time over the SLA: queue wait is not its doing.
                let outcome = s.breaker.classify(true, attempt.saturating_sub(reply.queue), m.sla);
                p.permit.record(outcome);
                s.series.record_success(&Latencies {
                    total: attempt,
                    queue: reply.queue,
                    marshal_in: timings.marshal_in,
                    compute: timings.compute,
                    marshal_out: timings.marshal_out,
                });
                if outcome == Outcome::Slow {
                    s.series.record_slow();
                }
                s.attempt_est.record(attempt);
                s.run_est.record(attempt.saturating_sub(reply.queue));
                Judged::Served { out, timings, queue: reply.queue }
            }
            Err(e) if e.kind() == ErrorKind::Cancelled && caller_cancelled => {
                // The caller cancelled: not the engine's failure, no fallback.
                p.permit.cancel();
                Judged::End(e)
            }
            Err(e) if e.kind() == ErrorKind::Timeout => {
                // The engine stopped itself at the deadline: its failure only when it ran
                // longer than it normally needs (not when it started late from its queue).
                if self.at_fault(p.i, attempt.saturating_sub(reply.queue)) {
                    p.permit.record(Outcome::Failure);
                    s.series.record_failure("timeout", attempt, reply.queue);
                } else {
                    p.permit.cancel();
                }
                Judged::next("timeout", e)
            }
            Err(e) => {
                p.permit.record(Outcome::Failure);
                s.series.record_failure(e.kind().as_str(), attempt, reply.queue);
                Judged::next(e.kind().as_str(), e)
            }
        }
    }

    /// When to look whether the first attempt's job is stuck in its queue: every stuck
    /// threshold of its engine (2 x its run p99 + 10 ms) while it is queued and another engine
    /// is left to start; `None` otherwise (and before the engine has answered once).
    pub(crate) fn stuck_check_at(&self, race: &Race<'_>) -> Option<Instant> {
        let p = race.pending.first().filter(|_| race.pending.len() == 1)?;
        if race.pos >= race.order.len() || !p.ticket.is_queued() {
            return None;
        }
        let th = self.stuck_threshold(p.i)?;
        Some(p.handed + th * (race.checks + 1))
    }

    /// True when the first attempt's job is still queued and every worker of its engine has
    /// been on its current job for longer than the engine's stuck threshold.
    pub(crate) fn queued_behind_stuck(&self, race: &Race<'_>) -> bool {
        let Some(p) = race.pending.first() else { return false };
        let Some(th) = self.stuck_threshold(p.i) else { return false };
        p.ticket.is_queued() && self.inner.served[p.i].lane.all_busy_for(th)
    }

    fn stuck_threshold(&self, i: usize) -> Option<Duration> {
        self.inner.served[i].run_est.p99().map(|p99| p99 * 2 + Duration::from_millis(10))
    }

    /// True when engine `i` spent `ran` on one job, well over what it needs (twice its
    /// observed p99 plus 10 ms), or has never answered yet: a timeout is then the engine's
    /// own, not time lost waiting for it.
    fn at_fault(&self, i: usize, ran: Duration) -> bool {
        self.inner.served[i]
            .run_est
            .p99()
            .is_none_or(|p99| ran > p99 * 2 + Duration::from_millis(10))
    }

    /// Another engine answered: the attempts still in flight are cancelled. One started before
    /// the winner and caught running far longer than it needs was overtaken by a hedge: the
    /// engine's timeout, and its instance is quarantined (queued calls move on). Other workers
    /// caught inside an engine are watched, and their instance quarantined if they do not
    /// come back within the grace.
    pub(crate) fn settle_losers(
        &self,
        winner_slot: usize,
        winner_hedge: bool,
        race: &mut Race<'_>,
    ) {
        let m = &*self.inner;
        if winner_hedge {
            m.model_series.record_hedge_win();
        }
        for q in std::mem::take(&mut race.pending) {
            let s = &m.served[q.i];
            match s.lane.give_up(&q.ticket) {
                GaveUp::Running { started, .. } => {
                    m.model_series.record_hedge_cancellation();
                    if q.slot < winner_slot && self.at_fault(q.i, started.elapsed()) {
                        // Far past its p99: stuck. Quarantine now, so calls queued behind it
                        // move on at once.
                        q.permit.record(Outcome::Failure);
                        let queue = started.saturating_duration_since(q.handed);
                        s.series.record_failure("timeout", q.handed.elapsed(), queue);
                        s.lane.quarantine();
                    } else {
                        q.permit.cancel();
                        s.lane.watch(&q.ticket);
                    }
                }
                GaveUp::Queued => {
                    m.model_series.record_hedge_cancellation();
                    q.permit.cancel();
                }
                GaveUp::Finished => q.permit.cancel(),
            }
        }
    }

    /// The caller stops waiting for every attempt in flight. At the deadline, an engine caught
    /// running a job longer than it needs timed out on its own compute: the breaker counts a
    /// failure and the instance is quarantined (its worker may never come back). A job still
    /// queued, or started too late to finish, is not the engine's failure: its worker is only
    /// watched, so a busy last-resort engine is never quarantined.
    pub(crate) fn abandon(&self, race: &mut Race<'_>, at_deadline: bool) {
        let m = &*self.inner;
        for q in std::mem::take(&mut race.pending) {
            let s = &m.served[q.i];
            match s.lane.give_up(&q.ticket) {
                GaveUp::Running { started, had } if at_deadline && self.at_fault(q.i, had) => {
                    q.permit.record(Outcome::Failure);
                    let queue = started.saturating_duration_since(q.handed);
                    s.series.record_failure("timeout", q.handed.elapsed(), queue);
                    s.lane.quarantine();
                }
                GaveUp::Running { .. } => {
                    q.permit.cancel();
                    s.lane.watch(&q.ticket);
                }
                GaveUp::Queued | GaveUp::Finished => q.permit.cancel(),
            }
        }
    }
}

/// One call's fixed facts, shared by its attempts.
pub(crate) struct Call<'a> {
    pub(crate) inputs: Arc<NamedTensors>,
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
    pub(crate) budget: Duration,
    pub(crate) cancel: Option<&'a CancelToken>,
    /// The call's `infer.run` span; each attempt records its engine on it.
    pub(crate) span: &'a tracing::Span,
}

/// One attempt handed to an engine and not yet answered.
pub(crate) struct InFlight<'s> {
    /// Index of the engine in `served`.
    pub(crate) i: usize,
    /// Tag of its answers on the call's reply channel; increases in start order.
    pub(crate) slot: usize,
    pub(crate) ticket: Ticket,
    pub(crate) permit: Permit<'s>,
    pub(crate) handed: Instant,
    /// Started beside other attempts still in flight.
    pub(crate) hedge: bool,
}

/// The attempts of one call.
pub(crate) struct Race<'s> {
    pub(crate) order: Vec<usize>,
    /// The last engine in `order` is let through its open breaker (every routing but
    /// `Require`, whose contract is the one engine's own answer, `CircuitOpen` included).
    pub(crate) may_bypass: bool,
    /// Next position in `order` to start.
    pub(crate) pos: usize,
    pub(crate) pending: Vec<InFlight<'s>>,
    pub(crate) tx: Sender<(usize, Reply)>,
    pub(crate) next_slot: usize,
    /// Stuck checks done for the first attempt.
    pub(crate) checks: u32,
    /// The last engine that did not serve, why (a label) and its message.
    pub(crate) fallback: Option<(usize, &'static str, String)>,
    pub(crate) first_reason: Option<String>,
    pub(crate) last_err: Option<Error>,
}

impl Race<'_> {
    fn skip(&mut self, j: usize, kind: &'static str, e: Error) {
        self.fallback = Some((j, kind, e.to_string()));
        self.last_err = Some(e);
    }
}

/// How starting the next engine went.
pub(crate) enum Start {
    Started,
    /// No engine left to start.
    Exhausted,
    /// The call is over (deadline passed, caller cancelled).
    End(Error),
}

/// What one answer means for the call.
pub(crate) enum Judged {
    Served { out: NamedTensors, timings: RunTimings, queue: Duration },
    End(Error),
    Next { kind: &'static str, message: String, error: Error },
}

impl Judged {
    fn next(kind: &'static str, error: Error) -> Judged {
        Judged::Next { kind, message: error.to_string(), error }
    }
}

/// Checks that an engine returned every declared output with the declared dtype and shape,
/// and only finite values (NaN or infinity is [`Error::NonFinite`], the engine's failure).
pub(crate) fn check_outputs(
    schema: &IoSchema,
    engine: &str,
    out: NamedTensors,
) -> Result<NamedTensors> {
    for spec in &schema.outputs {
        let Some(t) = out.get(&spec.name) else {
            return Err(Error::Runtime(format!(
                "engine `{engine}` returned no output `{}`; the engine is faulty, the call \
                 was counted as its failure",
                spec.name
            )));
        };
        if let Err(e) = spec.check(t) {
            let detail = match e {
                Error::InvalidInput { expected, got, .. } => {
                    format!("expected {expected}, got {got}")
                }
                other => other.to_string(),
            };
            return Err(Error::Runtime(format!(
                "engine `{engine}` returned output `{}` with the wrong form: {detail}",
                spec.name
            )));
        }
        let count = t.count_non_finite();
        if count > 0 {
            return Err(Error::NonFinite {
                engine: engine.to_string(),
                output: spec.name.clone(),
                count,
            });
        }
    }
    Ok(out)
}
