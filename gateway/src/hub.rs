//! The sessions on this process, by user, and the delivery of bus events to them.
//!
//! The hub holds one bus subscriber for the whole process and subscribes to a
//! user's topic while at least one of the user's sessions is here, and to a
//! group's topic while at least one of its members has a session here. So an
//! event is published once and fanned out locally to every device of every
//! member here. An event is encoded as a `ServerFrame` once and the same bytes
//! are queued to each session.
//!
//! Which groups a user is in comes from the core when their first session
//! starts, and then from `Membership` notices on the user's topic. The core
//! publishes a departure's notice before anything later on the group's topic,
//! and one subscriber connection receives in publish order, so a removed member
//! is no longer delivered the group by the time its next message arrives. The
//! group's own event of a departure names who went, so a departure whose
//! notice was lost still stops the group's delivery to them.
//!
//! Whom a user blocks comes the same way (with the groups, then from
//! `Blocking` notices): a group message from someone a member blocks is not
//! queued to that member's sessions. Checked per member only when the event
//! is a message, and only against a non-empty set, so a group whose members
//! block nobody is fanned out as before.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::presence::{Device, Presence};
use bytes::Bytes;
use futures_util::StreamExt as _;
use prost::Message as _;
use superapp_chat::policy;
use superapp_kit::bus::{Bus, BusMessage, Subscriber};
use superapp_kit::metrics::{Counter, Gauge, Registry};
use superapp_proto::Topic;
use superapp_proto::ids::{GroupId, UserId};
use superapp_proto::v1::{
    BusEnvelope, Event, ResyncRequired, ServerFrame, bus_envelope, event, server_frame,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Backend;
use crate::backend::Standing;
use crate::close;

/// After a lag, a user the core did not answer for is asked again after
/// this, then twice as long each time up to [`RECHECK_RETRY_MAX`].
const RECHECK_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(250);
const RECHECK_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(8);

/// How a session is reached: its outbound queue, and a way to close it.
#[derive(Clone)]
struct SessionHandle {
    connection: u64,
    session_id: u64,
    outbound: mpsc::Sender<Bytes>,
    kick: Kick,
}

/// The sessions of one user on this process, and the user's groups.
struct UserEntry {
    devices: Vec<SessionHandle>,
    groups: HashSet<GroupId>,
    /// Whom the user blocks: their group messages are not queued to the
    /// user's sessions. Usually empty, and then costs one test per message.
    blocked: HashSet<UserId>,
    /// Counts membership and blocking notices, so a standing fetched before
    /// one arrived is not applied over it.
    membership_changes: u64,
    /// Membership notices may have been lost (the bus lagged): no group is
    /// delivered to the user until their list is fetched again.
    stale: bool,
    /// Group -> the connections that were delivered, on the group's topic,
    /// the event of the user's own join: the user had the group already (a
    /// fetched list had it) when the event came, before the join's notice.
    /// The notice's copy of the event goes to the user's other devices only.
    heard_joins: HashMap<GroupId, Vec<u64>>,
}

#[derive(Default)]
struct Local {
    users: HashMap<UserId, UserEntry>,
    /// Group -> its members with a session here.
    groups: HashMap<GroupId, HashSet<UserId>>,
}

impl Local {
    fn devices(&self, user_id: UserId) -> &[SessionHandle] {
        self.users.get(&user_id).map_or(&[], |e| &e.devices)
    }

    fn join(&mut self, subscriber: &dyn Subscriber, user_id: UserId, group_id: GroupId) {
        let Some(entry) = self.users.get_mut(&user_id) else {
            return;
        };
        if entry.groups.insert(group_id) {
            let members = self.groups.entry(group_id).or_default();
            if members.is_empty() {
                subscriber.subscribe(&Topic::Group(group_id).to_string());
            }
            members.insert(user_id);
        }
    }

    fn leave(&mut self, subscriber: &dyn Subscriber, user_id: UserId, group_id: GroupId) {
        if let Some(entry) = self.users.get_mut(&user_id) {
            entry.groups.remove(&group_id);
            entry.heard_joins.remove(&group_id);
        }
        if let Some(members) = self.groups.get_mut(&group_id) {
            members.remove(&user_id);
            if members.is_empty() {
                self.groups.remove(&group_id);
                subscriber.unsubscribe(&Topic::Group(group_id).to_string());
            }
        }
    }
}

/// Asks a session to close with a code. The first code wins.
#[derive(Clone, Default)]
pub struct Kick {
    token: CancellationToken,
    code: Arc<AtomicU16>,
}

impl Kick {
    /// Asks the session to close with `code`; true when this call decided
    /// the code, false when another had already.
    pub fn kick(&self, code: u16) -> bool {
        let decided = self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        self.token.cancel();
        decided
    }

    pub async fn kicked(&self) -> u16 {
        self.token.cancelled().await;
        self.code()
    }

    /// The code decided, or 0 while none is.
    pub fn code(&self) -> u16 {
        self.code.load(Ordering::Acquire)
    }
}

pub struct Hub {
    subscriber: Arc<dyn Subscriber>,
    local: Mutex<Local>,
    presence: Arc<dyn Presence>,
    /// Session opens and closes for presence, applied in order by one task.
    presence_changes: mpsc::UnboundedSender<(Device, bool)>,
    /// Names this process in presence device keys.
    node: String,
    /// Where a user's groups and sessions are asked about again after a lag.
    backend: Arc<dyn Backend>,
    /// Lags seen so far: a recheck that a later lag overtook gives way to
    /// the later one's.
    lags: AtomicU64,
    stopped: CancellationToken,
    next_connection: AtomicU64,
    sessions: Arc<Gauge>,
    frames_out: Arc<Counter>,
    slow_consumers: Arc<Counter>,
}

impl Hub {
    /// Starts the hub and its dispatch task, which delivers until [`Hub::stop`]
    /// (after the sessions have drained, so the drain still carries events).
    /// Sessions are marked online in `presence` while they live, refreshed
    /// every third of its ttl.
    pub fn start(
        bus: &dyn Bus,
        metrics: &Registry,
        presence: Arc<dyn Presence>,
        node: String,
        backend: Arc<dyn Backend>,
    ) -> Arc<Self> {
        let (subscriber, events) = bus.subscriber(65_536);
        let (presence_changes, changes) = mpsc::unbounded_channel();
        let hub = Arc::new(Self {
            subscriber,
            local: Mutex::default(),
            presence,
            presence_changes,
            node,
            backend,
            lags: AtomicU64::new(0),
            stopped: CancellationToken::new(),
            // A random start keeps ids apart across gateways: a request's
            // origin travels through the core and back on the bus.
            next_connection: AtomicU64::new(rand::random::<u64>() >> 1 | 1),
            sessions: metrics.gauge("gateway_sessions", "Open WebSocket sessions."),
            frames_out: metrics.counter("gateway_frames_out_total", "Frames queued to sessions."),
            slow_consumers: metrics.counter(
                "gateway_slow_consumers_total",
                "Sessions closed because their outbound queue was full.",
            ),
        });
        tokio::spawn(hub.clone().dispatch(events));
        tokio::spawn(hub.clone().keep_presence(changes));
        hub
    }

    fn device(&self, user_id: UserId, connection: u64) -> Device {
        Device {
            user_id,
            key: format!("{}/{connection}", self.node),
        }
    }

    /// Keeps every session here marked online, so they stay online exactly as
    /// long as this process lives. Opens, closes and refreshes are applied one
    /// after another, so a close is never overtaken by its own open or by a
    /// refresh that listed the session before it closed.
    async fn keep_presence(self: Arc<Self>, mut changes: mpsc::UnboundedReceiver<(Device, bool)>) {
        let every = (self.presence.ttl() / 3).max(std::time::Duration::from_millis(100));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stopped.cancelled() => return,
                change = changes.recv() => {
                    let Some((device, online)) = change else { return };
                    let outcome = if online {
                        self.presence.refresh(vec![device]).await
                    } else {
                        self.presence.offline(device).await
                    };
                    if let Err(e) = outcome {
                        tracing::warn!(error = %e, "presence update failed");
                    }
                    continue;
                }
                _ = tick.tick() => {}
            }
            let devices: Vec<Device> = {
                let local = self.lock();
                local
                    .users
                    .iter()
                    .flat_map(|(&user, e)| e.devices.iter().map(move |d| (user, d.connection)))
                    .map(|(user, connection)| self.device(user, connection))
                    .collect()
            };
            if let Err(e) = self.presence.refresh(devices).await {
                tracing::warn!(error = %e, "presence refresh failed");
            }
        }
    }

    /// Registers a session; it is unregistered when the returned guard drops.
    pub fn register(
        self: &Arc<Self>,
        user_id: UserId,
        session_id: u64,
        outbound: mpsc::Sender<Bytes>,
    ) -> Registration {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let kick = Kick::default();
        let handle = SessionHandle {
            connection,
            session_id,
            outbound,
            kick: kick.clone(),
        };
        let mut local = self.lock();
        let entry = local.users.entry(user_id).or_insert_with(|| {
            self.subscriber.subscribe(&Topic::User(user_id).to_string());
            UserEntry {
                devices: Vec::new(),
                groups: HashSet::new(),
                blocked: HashSet::new(),
                membership_changes: 0,
                stale: false,
                heard_joins: HashMap::new(),
            }
        });
        entry.devices.push(handle);
        drop(local);
        self.sessions.inc();
        let _ = self
            .presence_changes
            .send((self.device(user_id, connection), true));
        Registration {
            hub: self.clone(),
            user_id,
            connection,
            kick,
        }
    }

    fn unregister(&self, user_id: UserId, connection: u64) {
        let mut local = self.lock();
        if let Some(entry) = local.users.get_mut(&user_id) {
            entry.devices.retain(|d| d.connection != connection);
            if entry.devices.is_empty() {
                let groups: Vec<GroupId> = entry.groups.iter().copied().collect();
                for group_id in groups {
                    local.leave(self.subscriber.as_ref(), user_id, group_id);
                }
                local.users.remove(&user_id);
                self.subscriber
                    .unsubscribe(&Topic::User(user_id).to_string());
            }
        }
        drop(local);
        self.sessions.dec();
        let _ = self
            .presence_changes
            .send((self.device(user_id, connection), false));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many membership notices the user has had here; pass it to
    /// [`Hub::set_groups`] with a group list fetched after reading it.
    pub fn membership_mark(&self, user_id: UserId) -> u64 {
        self.lock()
            .users
            .get(&user_id)
            .map_or(0, |e| e.membership_changes)
    }

    /// Delivers exactly these groups to the user's sessions here, unless a
    /// membership notice arrived since `mark` (then the list may be stale:
    /// returns false and the caller fetches again). Blocks stay as they are.
    pub fn set_groups(&self, user_id: UserId, groups: &[GroupId], mark: u64) -> bool {
        self.set(user_id, groups, None, mark)
    }

    /// [`set_groups`](Self::set_groups), and filters the group messages of
    /// exactly these blocked users out of what the user's sessions here are
    /// delivered.
    pub fn set_standing(&self, user_id: UserId, standing: &Standing, mark: u64) -> bool {
        self.set(user_id, &standing.groups, Some(&standing.blocked), mark)
    }

    fn set(
        &self,
        user_id: UserId,
        groups: &[GroupId],
        blocked: Option<&[UserId]>,
        mark: u64,
    ) -> bool {
        let mut local = self.lock();
        let gone: Vec<GroupId> = match local.users.get_mut(&user_id) {
            Some(entry) if entry.membership_changes != mark => return false,
            Some(entry) => {
                entry.stale = false;
                if let Some(blocked) = blocked {
                    entry.blocked = blocked.iter().copied().collect();
                }
                entry
                    .groups
                    .iter()
                    .copied()
                    .filter(|g| !groups.contains(g))
                    .collect()
            }
            None => return true,
        };
        for group_id in gone {
            local.leave(self.subscriber.as_ref(), user_id, group_id);
        }
        for &group_id in groups {
            local.join(self.subscriber.as_ref(), user_id, group_id);
        }
        true
    }

    /// After a lag (numbered `lag`), asks the core about every local user
    /// again, a few users at a time: their groups, delivered again once
    /// known, and which of their sessions here are no longer live, closed
    /// with 4001 (their revocation may be among the losses). A user the core
    /// does not answer for is asked again, less and less often, until it
    /// answers, the user's last session here ends, or a later lag asks anew.
    async fn recheck_after_lag(self: Arc<Self>, lag: u64) {
        let users: Vec<UserId> = self.lock().users.keys().copied().collect();
        let recheck = |user: UserId| {
            let hub = self.clone();
            async move {
                let mut wait = RECHECK_RETRY_FIRST;
                let mut overtaken = 0;
                while hub.lags.load(Ordering::Acquire) == lag && !hub.stopped.is_cancelled() {
                    let mark = hub.membership_mark(user);
                    let sessions = hub.session_ids(user);
                    if sessions.is_empty() {
                        return;
                    }
                    let Some(answer) = hub.backend.recheck(user, sessions).await else {
                        tokio::select! {
                            _ = hub.stopped.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                        wait = (wait * 2).min(RECHECK_RETRY_MAX);
                        continue;
                    };
                    hub.close_revoked(user, &answer.revoked);
                    if hub.set_standing(user, &answer.standing, mark) {
                        return;
                    }
                    // A membership notice came meanwhile: ask again.
                    overtaken += 1;
                    if overtaken == 3 {
                        tracing::warn!(
                            user_id = user.0,
                            "groups not fetched after a lag; held back until the user's next session"
                        );
                        return;
                    }
                }
            }
        };
        let mut pending =
            futures_util::stream::iter(users.into_iter().map(recheck)).buffer_unordered(16);
        while pending.next().await.is_some() {}
    }

    /// The sessions (refresh families) the user has open here.
    fn session_ids(&self, user_id: UserId) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .lock()
            .devices(user_id)
            .iter()
            .map(|d| d.session_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Closes, with 4001, the user's connections here of these sessions.
    fn close_revoked(&self, user_id: UserId, revoked: &[u64]) {
        for handle in self
            .lock()
            .devices(user_id)
            .iter()
            .filter(|d| revoked.contains(&d.session_id))
        {
            handle.kick.kick(close::SESSION_REVOKED);
        }
    }

    pub fn session_count(&self) -> i64 {
        self.sessions.get()
    }

    /// Ends the dispatch task.
    pub fn stop(&self) {
        self.stopped.cancel();
    }

    /// Closes a session as a slow consumer: its queue was full, or a write to
    /// it took too long. Counted once per session, by the call that decided
    /// its close, however many frames it misses meanwhile.
    pub fn close_slow(&self, kick: &Kick) {
        if kick.kick(close::SLOW_CONSUMER) {
            self.slow_consumers.inc();
        }
    }

    async fn dispatch(self: Arc<Self>, mut events: mpsc::Receiver<BusMessage>) {
        loop {
            let message = tokio::select! {
                _ = self.stopped.cancelled() => return,
                m = events.recv() => match m {
                    Some(m) => m,
                    None => return,
                },
            };
            match message {
                BusMessage::Message { topic, payload } => self.deliver(&topic, &payload),
                BusMessage::Lagged => {
                    // Something was lost for somebody here: every session resyncs.
                    tracing::warn!("bus lagged; asking every session to resync");
                    let frame = event_frame(Event {
                        kind: Some(event::Kind::ResyncRequired(ResyncRequired {})),
                    });
                    let mut local = self.lock();
                    for handle in local.users.values().flat_map(|e| &e.devices) {
                        self.queue(handle, frame.clone());
                    }
                    // Membership notices may be among the losses: hold every
                    // group back from everyone here until their lists are
                    // fetched again, so nobody removed meanwhile hears more
                    // (nor anyone who blocked a member meanwhile hears them).
                    // Revocations may be too: the same answer names the
                    // sessions to close.
                    for entry in local.users.values_mut() {
                        entry.stale = true;
                        entry.membership_changes += 1;
                    }
                    drop(local);
                    let lag = self.lags.fetch_add(1, Ordering::AcqRel) + 1;
                    tokio::spawn(self.clone().recheck_after_lag(lag));
                }
            }
        }
    }

    fn deliver(&self, topic: &str, payload: &[u8]) {
        let Ok(topic) = topic.parse::<Topic>() else {
            return;
        };
        let Ok(envelope) = BusEnvelope::decode(payload) else {
            tracing::warn!(%topic, "undecodable bus message dropped");
            return;
        };
        // The connection whose request caused the event has its copy already;
        // an event with a target (a call's signal) goes to that connection alone.
        let (origin, target) = (envelope.origin, envelope.target);
        let addressed = |handle: &&SessionHandle| {
            (origin == 0 || handle.connection != origin)
                && (target == 0 || handle.connection == target)
        };
        let mut local = self.lock();
        match (topic, envelope.kind) {
            (Topic::Group(group), Some(bus_envelope::Kind::Event(event))) => {
                let change = membership_change(&event);
                let sender = match &event.kind {
                    Some(event::Kind::Message(m)) => Some(UserId(m.sender)),
                    _ => None,
                };
                let frame = event_frame(event);
                let Some(members) = local.groups.get(&group) else {
                    return;
                };
                let joined = match &change {
                    Some((true, users)) => users.as_slice(),
                    _ => &[],
                };
                let mut heard = Vec::new();
                for (&user, entry) in members
                    .iter()
                    .filter_map(|user| local.users.get_key_value(user))
                    .filter(|(_, e)| !e.stale)
                    .filter(|(_, e)| sender.is_none_or(|s| policy::delivered_live(&e.blocked, s)))
                {
                    let told_of_own_join = joined.contains(&user);
                    let mut reached = Vec::new();
                    for handle in entry.devices.iter().filter(addressed) {
                        self.queue(handle, frame.clone());
                        if told_of_own_join {
                            reached.push(handle.connection);
                        }
                    }
                    if told_of_own_join {
                        heard.push((user, reached));
                    }
                }
                for (user, reached) in heard {
                    if let Some(entry) = local.users.get_mut(&user) {
                        entry.heard_joins.insert(group, reached);
                    }
                }
                // A departure: those named stop hearing the group here now,
                // whether or not their notice arrived (it may have been lost),
                // and a group list fetched before it is stale.
                if let Some((false, departed)) = change {
                    for user in departed {
                        if let Some(entry) = local.users.get_mut(&user) {
                            entry.membership_changes += 1;
                            local.leave(self.subscriber.as_ref(), user, group);
                        }
                    }
                }
            }
            (Topic::User(id), Some(bus_envelope::Kind::Event(event))) => {
                let frame = event_frame(event);
                for handle in local.devices(id).iter().filter(addressed) {
                    self.queue(handle, frame.clone());
                }
            }
            (Topic::User(id), Some(bus_envelope::Kind::Membership(m))) => {
                let Some(entry) = local.users.get_mut(&id) else {
                    return;
                };
                entry.membership_changes += 1;
                // Devices that heard the join on the group's topic (a fetched
                // list had the group then) have the event already; the others
                // hear it now, whatever the list says.
                let group = GroupId(m.group_id);
                let heard = entry.heard_joins.remove(&group).unwrap_or_default();
                if m.joined {
                    local.join(self.subscriber.as_ref(), id, group);
                } else {
                    local.leave(self.subscriber.as_ref(), id, group);
                }
                if let Some(event) = m.event {
                    let frame = event_frame(event);
                    for handle in local
                        .devices(id)
                        .iter()
                        .filter(|d| !m.joined || !heard.contains(&d.connection))
                    {
                        self.queue(handle, frame.clone());
                    }
                }
            }
            (Topic::User(id), Some(bus_envelope::Kind::Blocking(blocking))) => {
                let Some(entry) = local.users.get_mut(&id) else {
                    return;
                };
                // A standing fetched before this is stale.
                entry.membership_changes += 1;
                let other = UserId(blocking.user_id);
                if blocking.blocked {
                    entry.blocked.insert(other);
                } else {
                    entry.blocked.remove(&other);
                }
            }
            (Topic::User(id), Some(bus_envelope::Kind::SessionRevoked(revoked))) => {
                for handle in local
                    .devices(id)
                    .iter()
                    .filter(|d| d.session_id == revoked.session_id)
                {
                    handle.kick.kick(close::SESSION_REVOKED);
                }
            }
            _ => {}
        }
    }

    /// Never waits: a session whose queue is full is closed as a slow consumer,
    /// so one slow reader cannot hold up delivery to anyone else.
    fn queue(&self, handle: &SessionHandle, frame: Bytes) {
        match handle.outbound.try_send(frame) {
            Ok(()) => self.frames_out.inc(),
            Err(mpsc::error::TrySendError::Full(_)) => self.close_slow(&handle.kick),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Whom a group event adds (`true`) or takes away (`false`), for the events
/// that change who is in the group.
fn membership_change(event: &Event) -> Option<(bool, Vec<UserId>)> {
    use superapp_proto::v1::group_event::Kind;
    let Some(event::Kind::Group(group)) = &event.kind else {
        return None;
    };
    let joined = match group.kind() {
        Kind::Created | Kind::MembersAdded => true,
        Kind::MemberRemoved | Kind::MemberLeft => false,
        _ => return None,
    };
    Some((joined, group.users.iter().copied().map(UserId).collect()))
}

fn event_frame(event: Event) -> Bytes {
    Bytes::from(
        ServerFrame {
            kind: Some(server_frame::Kind::Event(event)),
        }
        .encode_to_vec(),
    )
}

/// Keeps a session registered while alive.
pub struct Registration {
    hub: Arc<Hub>,
    user_id: UserId,
    connection: u64,
    kick: Kick,
}

impl Registration {
    pub fn kick(&self) -> &Kick {
        &self.kick
    }

    /// This connection's id: unique on this process, and across processes in
    /// practice (each process counts from a random start).
    pub fn connection(&self) -> u64 {
        self.connection
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.user_id, self.connection);
    }
}

#[cfg(test)]
mod tests {
    //! The hub's rules on an in-process bus and a stand-in core, with no
    //! sockets: a session is its outbound queue, and what it would be sent is
    //! what the test reads from the queue's receiving end.
    //!
    //! The hub delivers on a task of its own. A witness user with a session
    //! here is sent a marker after whatever a test published; once the marker
    //! arrives, the hub has handled everything published before it (one
    //! subscriber receives in publish order), so what is not in a queue by then
    //! was not delivered.

    use std::time::Duration;

    use crate::presence::LocalPresence;
    use futures_util::FutureExt as _;
    use superapp_account::token::Claims;
    use superapp_kit::BoxFuture;
    use superapp_kit::bus::InProcessBus;
    use superapp_kit::clock::SystemClock;
    use superapp_proto::v1::{
        Blocking, GroupEvent, Membership, Message, Pong, ReadReceipt, SessionRevoked, client_frame,
        group_event, response,
    };
    use tokio::sync::watch;
    use tokio::time::timeout;

    use super::*;
    use crate::ApiError;
    use crate::backend::{Recheck, SessionStart};

    const ALICE: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const CAROL: UserId = UserId(3);
    const DAVE: UserId = UserId(4);
    /// Has a session here throughout, to be sent markers.
    const WITNESS: UserId = UserId(999);

    const FAMILY: GroupId = GroupId(10);
    const CLIMBING: GroupId = GroupId(11);
    const BOOK_CLUB: GroupId = GroupId(12);

    /// The topics a subscriber holds, and every change to them in order.
    #[derive(Default)]
    struct Subscriptions {
        held: HashSet<String>,
        /// `+u.1` for a subscribe, `-g.10` for an unsubscribe.
        calls: Vec<String>,
    }

    /// An [`InProcessBus`] that records its subscribers' topics, and may give
    /// them a shorter queue than they ask for, so that a test can overflow it.
    struct RecordingBus {
        inner: InProcessBus,
        queue: Option<usize>,
        subscriptions: Arc<watch::Sender<Subscriptions>>,
    }

    impl Bus for RecordingBus {
        fn publish(&self, topic: &str, payload: Bytes) {
            self.inner.publish(topic, payload);
        }

        fn subscriber(&self, capacity: usize) -> (Arc<dyn Subscriber>, mpsc::Receiver<BusMessage>) {
            let (inner, messages) = self.inner.subscriber(self.queue.unwrap_or(capacity));
            let subscriber = RecordingSubscriber {
                inner,
                subscriptions: self.subscriptions.clone(),
            };
            (Arc::new(subscriber), messages)
        }
    }

    struct RecordingSubscriber {
        inner: Arc<dyn Subscriber>,
        subscriptions: Arc<watch::Sender<Subscriptions>>,
    }

    impl Subscriber for RecordingSubscriber {
        fn subscribe(&self, topic: &str) {
            self.inner.subscribe(topic);
            self.subscriptions.send_modify(|s| {
                s.held.insert(topic.to_string());
                s.calls.push(format!("+{topic}"));
            });
        }

        fn unsubscribe(&self, topic: &str) {
            self.inner.unsubscribe(topic);
            self.subscriptions.send_modify(|s| {
                s.held.remove(topic);
                s.calls.push(format!("-{topic}"));
            });
        }
    }

    /// A core that tells a user's groups once the test has said what they
    /// are, and which sessions are revoked.
    #[derive(Default)]
    struct StandInCore {
        groups: Mutex<HashMap<UserId, watch::Sender<Option<Vec<GroupId>>>>>,
        revoked: Mutex<HashSet<(UserId, u64)>>,
        blocked: Mutex<HashMap<UserId, Vec<UserId>>>,
    }

    impl StandInCore {
        fn groups_of_user(&self, user: UserId) -> watch::Sender<Option<Vec<GroupId>>> {
            let mut groups = self.groups.lock().unwrap();
            groups
                .entry(user)
                .or_insert_with(|| watch::Sender::new(None))
                .clone()
        }

        /// Answers the asks for the user's groups, those waiting and those to come.
        fn answer(&self, user: UserId, groups: &[GroupId]) {
            self.groups_of_user(user)
                .send_replace(Some(groups.to_vec()));
        }

        /// The user's session was logged out; the answers to come say so.
        fn revoke(&self, user: UserId, session_id: u64) {
            self.revoked.lock().unwrap().insert((user, session_id));
        }
    }

    impl Backend for StandInCore {
        fn authenticate<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Claims, ApiError>> {
            Box::pin(async { Err(ApiError::unavailable("not in this test")) })
        }

        fn redeem_ticket<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Claims, ApiError>> {
            Box::pin(async { Err(ApiError::unavailable("not in this test")) })
        }

        fn session_start<'a>(&'a self, _: &'a Claims) -> BoxFuture<'a, SessionStart> {
            Box::pin(async { SessionStart::Unknown })
        }

        fn recheck(&self, user: UserId, sessions: Vec<u64>) -> BoxFuture<'_, Option<Recheck>> {
            let mut answer = self.groups_of_user(user).subscribe();
            Box::pin(async move {
                let groups = answer.wait_for(Option::is_some).await.ok()?.clone()?;
                let revoked = self.revoked.lock().unwrap();
                let revoked = sessions
                    .into_iter()
                    .filter(|&s| revoked.contains(&(user, s)))
                    .collect();
                let blocked = self.blocked.lock().unwrap().get(&user).cloned();
                let standing = Standing {
                    groups,
                    blocked: blocked.unwrap_or_default(),
                };
                Some(Recheck { standing, revoked })
            })
        }

        fn handle(
            &self,
            _: UserId,
            _: u64,
            _: u64,
            _: Option<client_frame::Request>,
        ) -> BoxFuture<'_, response::Result> {
            Box::pin(async { response::Result::Pong(Pong { server_time_ms: 0 }) })
        }
    }

    /// One session as the hub knows it.
    struct Device {
        registration: Registration,
        frames: mpsc::Receiver<Bytes>,
    }

    impl Device {
        fn connection(&self) -> u64 {
            self.registration.connection()
        }

        async fn next_event(&mut self) -> Event {
            let frame = timeout(Duration::from_secs(5), self.frames.recv())
                .await
                .expect("an event was queued in time")
                .expect("the queue is open");
            decode(frame)
        }

        async fn receives(&mut self, expected: Event) {
            assert_eq!(self.next_event().await, expected);
        }

        /// Meaningful once [`Harness::settle`] has returned.
        fn has_nothing_queued(&mut self) {
            match self.frames.try_recv() {
                Err(mpsc::error::TryRecvError::Empty) => {}
                Ok(frame) => panic!("unexpected {:?}", decode(frame)),
                Err(mpsc::error::TryRecvError::Disconnected) => panic!("the queue is closed"),
            }
        }

        /// The close code the session was asked to close with, if it was.
        fn kicked_with(&self) -> Option<u16> {
            self.registration.kick().kicked().now_or_never()
        }

        async fn is_kicked_with(&self, code: u16) {
            let kicked = timeout(Duration::from_secs(5), self.registration.kick().kicked()).await;
            assert_eq!(kicked, Ok(code));
        }
    }

    fn decode(frame: Bytes) -> Event {
        match ServerFrame::decode(frame).unwrap().kind {
            Some(server_frame::Kind::Event(event)) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Something said in a group, told apart by its text.
    fn said(group: GroupId, text: &str) -> Event {
        Event {
            kind: Some(event::Kind::Group(GroupEvent {
                group_id: group.0,
                kind: group_event::Kind::Announcement as i32,
                text: text.into(),
                ..Default::default()
            })),
        }
    }

    /// A message `sender` sent to the group, told apart by its seq.
    fn message(group: GroupId, sender: UserId, seq: u64) -> Event {
        Event {
            kind: Some(event::Kind::Message(Message {
                conversation_id: format!("g.{}", group.0),
                seq,
                sender: sender.0,
                ..Default::default()
            })),
        }
    }

    /// The group's event of `user` joining it.
    fn added(group: GroupId, user: UserId) -> Event {
        membership_event(group, group_event::Kind::MembersAdded, user)
    }

    /// The group's event of `user` being removed from it.
    fn removed(group: GroupId, user: UserId) -> Event {
        membership_event(group, group_event::Kind::MemberRemoved, user)
    }

    fn membership_event(group: GroupId, kind: group_event::Kind, user: UserId) -> Event {
        Event {
            kind: Some(event::Kind::Group(GroupEvent {
                group_id: group.0,
                kind: kind as i32,
                users: vec![user.0],
                ..Default::default()
            })),
        }
    }

    /// An event for one user's devices, told apart by its number.
    fn receipt(read_seq: u64) -> Event {
        Event {
            kind: Some(event::Kind::ReadReceipt(ReadReceipt {
                conversation_id: "d.1.2".into(),
                reader: BOB.0,
                read_seq,
            })),
        }
    }

    fn resync() -> Event {
        Event {
            kind: Some(event::Kind::ResyncRequired(ResyncRequired {})),
        }
    }

    struct Harness {
        bus: Arc<RecordingBus>,
        subscriptions: watch::Receiver<Subscriptions>,
        hub: Arc<Hub>,
        core: Arc<StandInCore>,
        metrics: Registry,
        witness: Device,
        markers: u64,
    }

    impl Harness {
        fn new() -> Self {
            Self::with_bus_queue(None)
        }

        /// A hub whose bus queue holds `queue` messages, not the 65,536 it asks for.
        fn with_bus_queue(queue: Option<usize>) -> Self {
            let subscriptions = Arc::new(watch::Sender::new(Subscriptions::default()));
            let bus = Arc::new(RecordingBus {
                inner: InProcessBus::new(),
                queue,
                subscriptions: subscriptions.clone(),
            });
            let metrics = Registry::new();
            let presence = Arc::new(LocalPresence::new(
                Arc::new(SystemClock),
                Duration::from_secs(30),
            ));
            let core = Arc::new(StandInCore::default());
            let hub = Hub::start(
                bus.as_ref(),
                &metrics,
                presence,
                "test".into(),
                core.clone(),
            );
            let witness = connect_to(&hub, WITNESS, 0, 64);
            Self {
                bus,
                subscriptions: subscriptions.subscribe(),
                hub,
                core,
                metrics,
                witness,
                markers: 0,
            }
        }

        fn connect(&self, user: UserId, session_id: u64) -> Device {
            self.connect_with_queue(user, session_id, 16)
        }

        fn connect_with_queue(&self, user: UserId, session_id: u64, queue: usize) -> Device {
            connect_to(&self.hub, user, session_id, queue)
        }

        /// The user's groups as fetched from the core with nothing in between.
        fn set_groups(&self, user: UserId, groups: &[GroupId]) {
            let mark = self.hub.membership_mark(user);
            assert!(self.hub.set_groups(user, groups, mark));
        }

        fn publish(&self, topic: Topic, kind: bus_envelope::Kind, origin: u64) {
            let envelope = BusEnvelope {
                kind: Some(kind),
                origin,
                target: 0,
            };
            self.bus
                .publish(&topic.to_string(), envelope.encode_to_vec().into());
        }

        fn to_group(&self, group: GroupId, event: Event, origin: u64) {
            self.publish(
                Topic::Group(group),
                bus_envelope::Kind::Event(event),
                origin,
            );
        }

        fn to_user(&self, user: UserId, event: Event, origin: u64) {
            self.publish(Topic::User(user), bus_envelope::Kind::Event(event), origin);
        }

        fn membership(&self, user: UserId, group: GroupId, joined: bool, event: Option<Event>) {
            let notice = Membership {
                group_id: group.0,
                joined,
                event,
            };
            self.publish(Topic::User(user), bus_envelope::Kind::Membership(notice), 0);
        }

        /// The user's standing as fetched from the core with nothing in between.
        fn set_standing(&self, user: UserId, groups: &[GroupId], blocked: &[UserId]) {
            let mark = self.hub.membership_mark(user);
            let standing = Standing {
                groups: groups.to_vec(),
                blocked: blocked.to_vec(),
            };
            assert!(self.hub.set_standing(user, &standing, mark));
        }

        fn blocking(&self, user: UserId, other: UserId, blocked: bool) {
            let notice = Blocking {
                user_id: other.0,
                blocked,
            };
            self.publish(Topic::User(user), bus_envelope::Kind::Blocking(notice), 0);
        }

        fn revoke(&self, user: UserId, session_id: u64) {
            let revoked = SessionRevoked { session_id };
            self.publish(
                Topic::User(user),
                bus_envelope::Kind::SessionRevoked(revoked),
                0,
            );
        }

        /// Returns once the hub has handled everything published so far.
        async fn settle(&mut self) {
            self.markers += 1;
            let marker = receipt(u64::MAX - self.markers);
            self.to_user(WITNESS, marker.clone(), 0);
            while self.witness.next_event().await != marker {}
        }

        /// Overflows the hub's bus queue (of `queue` messages) with what
        /// `lose` publishes, which is lost; the next message the hub receives
        /// is preceded by `BusMessage::Lagged`.
        async fn overflow_losing(&mut self, queue: usize, lose: impl FnOnce(&Self)) {
            // One thread runs the test and the hub alike: nothing takes from
            // the queue while these are published.
            let first = self.markers + 1;
            for _ in 0..queue {
                self.markers += 1;
                self.to_user(WITNESS, receipt(u64::MAX - self.markers), 0);
            }
            lose(self);
            for n in first..first + queue as u64 {
                self.witness.receives(receipt(u64::MAX - n)).await;
            }
        }

        /// Overflows the hub's bus queue (of `queue` messages), so that the
        /// next message it receives is preceded by `BusMessage::Lagged`.
        async fn overflow(&mut self, queue: usize) {
            // One thread runs the test and the hub alike: nothing takes from
            // the queue while these are published, and the last is dropped.
            let first = self.markers + 1;
            for _ in 0..=queue {
                self.markers += 1;
                self.to_user(WITNESS, receipt(u64::MAX - self.markers), 0);
            }
            for n in first..first + queue as u64 {
                self.witness.receives(receipt(u64::MAX - n)).await;
            }
        }

        fn held(&self) -> HashSet<String> {
            self.subscriptions.borrow().held.clone()
        }

        fn calls(&self) -> Vec<String> {
            self.subscriptions.borrow().calls.clone()
        }

        async fn holds(&mut self, topic: &str) {
            let held = self.subscriptions.wait_for(|s| s.held.contains(topic));
            timeout(Duration::from_secs(5), held)
                .await
                .expect("subscribed in time")
                .unwrap();
        }

        fn slow_consumers(&self) -> u64 {
            self.metrics
                .counter("gateway_slow_consumers_total", "")
                .get()
        }
    }

    fn connect_to(hub: &Arc<Hub>, user: UserId, session_id: u64, queue: usize) -> Device {
        let (outbound, frames) = mpsc::channel(queue);
        let registration = hub.register(user, session_id, outbound);
        Device {
            registration,
            frames,
        }
    }

    #[tokio::test]
    async fn an_event_for_a_user_reaches_every_device_but_the_one_that_caused_it() {
        let mut h = Harness::new();
        let mut phone = h.connect(ALICE, 1);
        let mut laptop = h.connect(ALICE, 2);
        let mut tablet = h.connect(ALICE, 3);
        let mut bob = h.connect(BOB, 4);

        h.to_user(ALICE, receipt(1), phone.connection());
        laptop.receives(receipt(1)).await;
        tablet.receives(receipt(1)).await;
        h.settle().await;
        phone.has_nothing_queued();
        bob.has_nothing_queued();

        // An event no connection caused reaches them all.
        h.to_user(ALICE, receipt(2), 0);
        for device in [&mut phone, &mut laptop, &mut tablet] {
            device.receives(receipt(2)).await;
        }
        h.settle().await;
        bob.has_nothing_queued();
    }

    #[tokio::test]
    async fn an_event_with_a_target_reaches_that_connection_alone() {
        let mut h = Harness::new();
        let mut phone = h.connect(ALICE, 1);
        let mut laptop = h.connect(ALICE, 2);
        let envelope = BusEnvelope {
            kind: Some(bus_envelope::Kind::Event(receipt(7))),
            origin: 0,
            target: laptop.connection(),
        };
        h.bus.publish(
            &Topic::User(ALICE).to_string(),
            envelope.encode_to_vec().into(),
        );
        laptop.receives(receipt(7)).await;
        h.settle().await;
        phone.has_nothing_queued();

        // A target not on this process reaches nobody here.
        let elsewhere = BusEnvelope {
            kind: Some(bus_envelope::Kind::Event(receipt(8))),
            origin: 0,
            target: laptop.connection() ^ 0x5555,
        };
        h.bus.publish(
            &Topic::User(ALICE).to_string(),
            elsewhere.encode_to_vec().into(),
        );
        h.settle().await;
        phone.has_nothing_queued();
        laptop.has_nothing_queued();
    }

    #[tokio::test]
    async fn a_group_event_reaches_exactly_the_members_here_who_have_the_group() {
        let mut h = Harness::new();
        let mut alice_phone = h.connect(ALICE, 1);
        let mut alice_laptop = h.connect(ALICE, 2);
        let mut bob = h.connect(BOB, 3);
        let mut carol = h.connect(CAROL, 4);
        let mut dave = h.connect(DAVE, 5);
        h.set_groups(ALICE, &[FAMILY, CLIMBING]);
        h.set_groups(BOB, &[FAMILY]);
        h.set_groups(CAROL, &[CLIMBING]);

        h.to_group(FAMILY, said(FAMILY, "dinner at eight"), 0);
        for device in [&mut alice_phone, &mut alice_laptop, &mut bob] {
            device.receives(said(FAMILY, "dinner at eight")).await;
        }
        h.settle().await;
        carol.has_nothing_queued();
        dave.has_nothing_queued();

        // The device that said it has its copy already.
        h.to_group(FAMILY, said(FAMILY, "see you"), alice_phone.connection());
        alice_laptop.receives(said(FAMILY, "see you")).await;
        bob.receives(said(FAMILY, "see you")).await;
        h.settle().await;
        alice_phone.has_nothing_queued();
        carol.has_nothing_queued();
    }

    #[tokio::test]
    async fn a_member_who_leaves_hears_of_it_and_then_nothing_more_of_the_group() {
        let mut h = Harness::new();
        let mut alice = h.connect(ALICE, 1);
        let mut bob = h.connect(BOB, 2);
        h.set_groups(ALICE, &[FAMILY]);
        h.set_groups(BOB, &[FAMILY]);

        h.membership(ALICE, FAMILY, false, Some(said(FAMILY, "alice left")));
        h.to_group(FAMILY, said(FAMILY, "she's gone"), 0);
        alice.receives(said(FAMILY, "alice left")).await;
        bob.receives(said(FAMILY, "she's gone")).await;
        h.settle().await;
        alice.has_nothing_queued();
        bob.has_nothing_queued();
    }

    #[tokio::test]
    async fn a_member_who_joins_is_told_so_and_then_hears_the_group() {
        let mut h = Harness::new();
        let mut phone = h.connect(ALICE, 1);
        let mut laptop = h.connect(ALICE, 2);

        h.to_group(CLIMBING, said(CLIMBING, "before alice"), 0);
        h.membership(ALICE, CLIMBING, true, Some(said(CLIMBING, "alice added")));
        for device in [&mut phone, &mut laptop] {
            device.receives(said(CLIMBING, "alice added")).await;
        }
        // Delivery starts once the hub has had the notice (a message published
        // before that is not delivered live: architecture.md, 16.4).
        h.to_group(CLIMBING, said(CLIMBING, "welcome"), 0);
        for device in [&mut phone, &mut laptop] {
            device.receives(said(CLIMBING, "welcome")).await;
        }
        h.settle().await;
        phone.has_nothing_queued();
        laptop.has_nothing_queued();
    }

    #[tokio::test]
    async fn a_join_notice_reaches_only_the_devices_that_did_not_hear_the_join_on_the_group_s_topic()
     {
        let mut h = Harness::new();
        let mut phone = h.connect(ALICE, 1);
        // Her phone's list, fetched after the join, has the group already.
        h.set_groups(ALICE, &[CLIMBING]);

        h.to_group(CLIMBING, added(CLIMBING, ALICE), 0);
        phone.receives(added(CLIMBING, ALICE)).await;
        // Her laptop starts after the group's event, before the notice.
        let mut laptop = h.connect(ALICE, 2);
        h.set_groups(ALICE, &[CLIMBING]);
        h.membership(ALICE, CLIMBING, true, Some(added(CLIMBING, ALICE)));
        laptop.receives(added(CLIMBING, ALICE)).await;
        h.settle().await;
        phone.has_nothing_queued();

        h.to_group(CLIMBING, said(CLIMBING, "welcome"), 0);
        phone.receives(said(CLIMBING, "welcome")).await;
        laptop.receives(said(CLIMBING, "welcome")).await;
    }

    #[tokio::test]
    async fn a_member_whose_departure_notice_was_lost_stops_hearing_the_group_at_its_departure_event()
     {
        let mut h = Harness::new();
        let mut alice = h.connect(ALICE, 1);
        let mut bob = h.connect(BOB, 2);
        h.set_groups(ALICE, &[FAMILY]);
        h.set_groups(BOB, &[FAMILY]);

        // Alice's notice is lost; the group's own event of it names her.
        h.to_group(FAMILY, removed(FAMILY, ALICE), 0);
        h.to_group(FAMILY, said(FAMILY, "she's gone"), 0);
        h.to_user(ALICE, receipt(1), 0);
        for device in [&mut alice, &mut bob] {
            device.receives(removed(FAMILY, ALICE)).await;
        }
        bob.receives(said(FAMILY, "she's gone")).await;
        alice.receives(receipt(1)).await;
        h.settle().await;
        alice.has_nothing_queued();
        bob.has_nothing_queued();
    }

    #[tokio::test]
    async fn a_group_list_fetched_before_a_departure_the_group_s_topic_announced_is_refused() {
        let mut h = Harness::new();
        let mut alice = h.connect(ALICE, 1);
        let _bob = h.connect(BOB, 2);
        h.set_groups(BOB, &[FAMILY]);
        // Alice's list is fetched before her removal...
        let mark = h.hub.membership_mark(ALICE);
        let fetched = [FAMILY];
        // ...whose notice is lost; Bob keeps the group's topic held here.
        h.to_group(FAMILY, removed(FAMILY, ALICE), 0);
        h.settle().await;

        assert!(!h.hub.set_groups(ALICE, &fetched, mark));
        h.to_group(FAMILY, said(FAMILY, "she's gone"), 0);
        h.settle().await;
        alice.has_nothing_queued();
    }

    #[tokio::test]
    async fn a_group_list_fetched_before_a_membership_notice_is_refused_and_changes_nothing() {
        let mut h = Harness::new();
        let mut alice = h.connect(ALICE, 1);
        let mark = h.hub.membership_mark(ALICE);
        // Fetched from the core before she joined the climbing group...
        let fetched = [FAMILY];
        // ...whose notice arrives before the list is applied.
        h.membership(ALICE, CLIMBING, true, None);
        h.settle().await;

        assert!(!h.hub.set_groups(ALICE, &fetched, mark));
        assert!(!h.held().contains("g.10"));
        h.to_group(FAMILY, said(FAMILY, "dinner at eight"), 0);
        h.to_group(CLIMBING, said(CLIMBING, "welcome"), 0);
        alice.receives(said(CLIMBING, "welcome")).await;
        h.settle().await;
        alice.has_nothing_queued();

        // Fetched again after the notice, the list is applied as it is.
        h.set_groups(ALICE, &[FAMILY]);
        h.to_group(FAMILY, said(FAMILY, "dinner at nine"), 0);
        h.to_group(CLIMBING, said(CLIMBING, "rope check"), 0);
        alice.receives(said(FAMILY, "dinner at nine")).await;
        h.settle().await;
        alice.has_nothing_queued();
    }

    #[tokio::test]
    async fn the_hub_holds_a_user_s_topic_only_while_the_user_has_a_session_here() {
        let mut h = Harness::new();
        assert!(!h.held().contains("u.1"));
        let phone = h.connect(ALICE, 1);
        let mut laptop = h.connect(ALICE, 2);
        assert!(h.held().contains("u.1"));

        drop(phone);
        assert!(h.held().contains("u.1"));
        h.to_user(ALICE, receipt(1), 0);
        laptop.receives(receipt(1)).await;

        drop(laptop);
        assert!(!h.held().contains("u.1"));
        assert_eq!(
            h.calls().iter().filter(|c| c.ends_with("u.1")).count(),
            2,
            "one subscribe and one unsubscribe: {:?}",
            h.calls()
        );

        // Back again, the user is subscribed again.
        let mut tablet = h.connect(ALICE, 3);
        h.to_user(ALICE, receipt(2), 0);
        tablet.receives(receipt(2)).await;
        h.settle().await;
    }

    #[tokio::test]
    async fn the_hub_holds_a_group_s_topic_only_while_a_member_has_a_session_here() {
        let mut h = Harness::new();
        let alice = h.connect(ALICE, 1);
        let mut bob = h.connect(BOB, 2);
        assert!(!h.held().contains("g.10"));
        h.set_groups(ALICE, &[FAMILY, CLIMBING]);
        h.set_groups(BOB, &[FAMILY]);
        assert!(h.held().contains("g.10"));
        assert!(h.held().contains("g.11"));
        assert_eq!(
            h.calls().iter().filter(|c| *c == "+g.10").count(),
            1,
            "one subscription however many members: {:?}",
            h.calls()
        );

        // Alice's last session ends: her groups go with it, but Bob still has
        // the family group.
        drop(alice);
        assert!(h.held().contains("g.10"));
        assert!(!h.held().contains("g.11"));
        h.to_group(FAMILY, said(FAMILY, "dinner at eight"), 0);
        bob.receives(said(FAMILY, "dinner at eight")).await;

        // Bob leaves it: nobody here is in it any more.
        h.membership(BOB, FAMILY, false, None);
        h.settle().await;
        assert!(!h.held().contains("g.10"));
        assert!(h.calls().ends_with(&["-g.10".to_string()]));
    }

    #[tokio::test]
    async fn a_revoked_session_is_closed_and_the_user_s_other_sessions_stay_open() {
        let mut h = Harness::new();
        let phone = h.connect(ALICE, 1);
        let mut laptop = h.connect(ALICE, 2);
        // The same session number, of somebody else.
        let bob = h.connect(BOB, 1);

        h.revoke(ALICE, 1);
        phone.is_kicked_with(close::SESSION_REVOKED).await;
        h.settle().await;
        assert_eq!(laptop.kicked_with(), None);
        assert_eq!(bob.kicked_with(), None);

        h.to_user(ALICE, receipt(1), 0);
        laptop.receives(receipt(1)).await;
    }

    #[tokio::test]
    async fn a_session_whose_queue_is_full_is_closed_as_a_slow_consumer_and_the_others_still_hear()
    {
        let mut h = Harness::new();
        let mut phone = h.connect_with_queue(ALICE, 1, 1);
        let mut laptop = h.connect(ALICE, 2);
        let mut bob = h.connect(BOB, 3);
        h.set_groups(ALICE, &[FAMILY]);
        h.set_groups(BOB, &[FAMILY]);

        // The phone reads nothing; its queue holds one frame.
        h.to_group(FAMILY, said(FAMILY, "one"), 0);
        h.to_group(FAMILY, said(FAMILY, "two"), 0);
        for device in [&mut laptop, &mut bob] {
            device.receives(said(FAMILY, "one")).await;
            device.receives(said(FAMILY, "two")).await;
        }
        phone.is_kicked_with(close::SLOW_CONSUMER).await;
        assert_eq!(laptop.kicked_with(), None);
        assert_eq!(bob.kicked_with(), None);
        assert_eq!(h.slow_consumers(), 1);
        phone.receives(said(FAMILY, "one")).await;
        h.settle().await;
        phone.has_nothing_queued();
    }

    #[tokio::test]
    async fn a_member_is_not_sent_the_group_messages_of_someone_they_block() {
        let mut h = Harness::new();
        let mut alice = h.connect(ALICE, 1);
        let mut alice_laptop = h.connect(ALICE, 2);
        let mut bob = h.connect(BOB, 3);
        h.set_standing(ALICE, &[FAMILY], &[CAROL]);
        h.set_standing(BOB, &[FAMILY], &[]);

        h.to_group(FAMILY, message(FAMILY, CAROL, 1), 0);
        h.to_group(FAMILY, message(FAMILY, DAVE, 2), 0);
        bob.receives(message(FAMILY, CAROL, 1)).await;
        bob.receives(message(FAMILY, DAVE, 2)).await;
        alice.receives(message(FAMILY, DAVE, 2)).await;
        alice_laptop.receives(message(FAMILY, DAVE, 2)).await;
        // What Carol does in the group besides speaking still reaches Alice.
        let announced = Event {
            kind: Some(event::Kind::Group(GroupEvent {
                group_id: FAMILY.0,
                kind: group_event::Kind::Announcement as i32,
                actor: CAROL.0,
                text: "picnic".into(),
                ..Default::default()
            })),
        };
        h.to_group(FAMILY, announced.clone(), 0);
        alice.receives(announced).await;
        h.settle().await;
        bob.frames.try_recv().unwrap();
        alice.has_nothing_queued();
        bob.has_nothing_queued();
    }

    #[tokio::test]
    async fn a_blocking_notice_starts_and_ends_the_filter_for_every_device() {
        let mut h = Harness::new();
        let mut phone = h.connect(ALICE, 1);
        let mut laptop = h.connect(ALICE, 2);
        h.set_standing(ALICE, &[FAMILY], &[]);

        h.blocking(ALICE, CAROL, true);
        h.to_group(FAMILY, message(FAMILY, CAROL, 1), 0);
        h.settle().await;
        phone.has_nothing_queued();
        laptop.has_nothing_queued();

        h.blocking(ALICE, CAROL, false);
        h.to_group(FAMILY, message(FAMILY, CAROL, 2), 0);
        phone.receives(message(FAMILY, CAROL, 2)).await;
        laptop.receives(message(FAMILY, CAROL, 2)).await;
    }

    #[tokio::test]
    async fn a_standing_fetched_before_a_blocking_notice_is_refused() {
        let mut h = Harness::new();
        let _phone = h.connect(ALICE, 1);
        let mark = h.hub.membership_mark(ALICE);
        h.blocking(ALICE, CAROL, true);
        h.settle().await;
        let fetched = Standing {
            groups: vec![FAMILY],
            blocked: Vec::new(),
        };
        assert!(!h.hub.set_standing(ALICE, &fetched, mark));
    }

    #[tokio::test]
    async fn after_a_lag_that_lost_a_blocking_notice_the_block_holds_once_fetched_again() {
        const QUEUE: usize = 2;
        let mut h = Harness::with_bus_queue(Some(QUEUE));
        let mut alice = h.connect(ALICE, 1);
        h.set_standing(ALICE, &[FAMILY], &[]);

        h.core.blocked.lock().unwrap().insert(ALICE, vec![CAROL]);
        h.overflow_losing(QUEUE, |h| h.blocking(ALICE, CAROL, true))
            .await;
        h.to_group(FAMILY, message(FAMILY, CAROL, 1), 0);
        alice.receives(resync()).await;
        h.settle().await;
        alice.has_nothing_queued();

        h.core.answer(ALICE, &[FAMILY]);
        h.holds("g.10").await;
        // Fetched again: the group comes back, Carol's messages do not.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            h.to_group(FAMILY, message(FAMILY, DAVE, 2), 0);
            h.settle().await;
            if alice.frames.try_recv().is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the group never came back"
            );
        }
        h.to_group(FAMILY, message(FAMILY, CAROL, 3), 0);
        h.settle().await;
        alice.has_nothing_queued();
    }

    #[tokio::test]
    async fn a_slow_consumer_is_counted_once_however_many_frames_it_misses() {
        let mut h = Harness::new();
        let phone = h.connect_with_queue(ALICE, 1, 1);
        h.set_groups(ALICE, &[FAMILY]);

        for text in ["one", "two", "three", "four"] {
            h.to_group(FAMILY, said(FAMILY, text), 0);
        }
        phone.is_kicked_with(close::SLOW_CONSUMER).await;
        h.settle().await;
        // gateway_slow_consumers_total counts sessions closed (architecture.md, 9).
        assert_eq!(h.slow_consumers(), 1);
    }

    #[tokio::test]
    async fn a_device_open_through_a_join_is_told_of_it_when_another_device_fetched_the_group_first()
     {
        let mut h = Harness::new();
        let mut phone = h.connect(ALICE, 1);
        h.set_groups(ALICE, &[]);

        // Alice is added to the climbing group: its members are told first,
        // on a topic nobody here holds yet.
        h.to_group(CLIMBING, said(CLIMBING, "alice added"), 0);
        // Her laptop starts before the notice reaches the hub, and its list
        // has the group already.
        let _laptop = h.connect(ALICE, 2);
        h.set_groups(ALICE, &[CLIMBING]);
        h.membership(ALICE, CLIMBING, true, Some(said(CLIMBING, "alice added")));

        h.settle().await;

        // The phone was open all along and heard nothing of it on the group's topic.
        let queued = phone.frames.try_recv().ok().map(decode);
        assert_eq!(queued, Some(said(CLIMBING, "alice added")));
    }

    #[tokio::test]
    async fn after_a_lag_that_lost_a_revocation_the_revoked_session_is_closed_and_the_others_stay_open()
     {
        const QUEUE: usize = 2;
        let mut h = Harness::with_bus_queue(Some(QUEUE));
        let phone = h.connect(ALICE, 1);
        let mut laptop = h.connect(ALICE, 2);
        let bob = h.connect(BOB, 1);
        h.set_groups(ALICE, &[]);
        h.set_groups(BOB, &[]);

        // The phone's session is logged out; its revocation is lost.
        h.core.revoke(ALICE, 1);
        h.overflow_losing(QUEUE, |h| h.revoke(ALICE, 1)).await;
        h.to_user(ALICE, receipt(1), 0);
        laptop.receives(resync()).await;
        laptop.receives(receipt(1)).await;
        assert_eq!(phone.kicked_with(), None);

        // Asked again after the lag, the core names the revoked session; the
        // groups in the same answer are delivered once that is done.
        h.core.answer(ALICE, &[FAMILY]);
        phone.is_kicked_with(close::SESSION_REVOKED).await;
        h.holds("g.10").await;
        assert_eq!(laptop.kicked_with(), None);
        // Bob's session has the same number; it is not his that was revoked.
        h.core.answer(BOB, &[BOOK_CLUB]);
        h.holds("g.12").await;
        assert_eq!(bob.kicked_with(), None);
    }

    #[tokio::test]
    async fn after_a_lag_a_user_s_groups_are_held_back_until_fetched_again() {
        const QUEUE: usize = 2;
        let mut h = Harness::with_bus_queue(Some(QUEUE));
        let mut alice = h.connect(ALICE, 1);
        let mut bob = h.connect(BOB, 2);
        h.set_groups(ALICE, &[FAMILY]);
        h.set_groups(BOB, &[FAMILY]);
        let mark_before_the_lag = h.hub.membership_mark(ALICE);
        h.to_group(FAMILY, said(FAMILY, "before"), 0);
        alice.receives(said(FAMILY, "before")).await;
        bob.receives(said(FAMILY, "before")).await;

        // Lost in the lag, perhaps: Alice joined the climbing group, and Bob
        // left the family for the book club.
        h.overflow(QUEUE).await;
        h.to_group(FAMILY, said(FAMILY, "during"), 0);
        alice.receives(resync()).await;
        bob.receives(resync()).await;
        h.settle().await;
        alice.has_nothing_queued();
        bob.has_nothing_queued();
        // A list fetched before the lag may miss what was lost.
        assert!(!h.hub.set_groups(ALICE, &[FAMILY], mark_before_the_lag));

        // The witness's list is never answered; it is in no group.
        h.core.answer(ALICE, &[FAMILY, CLIMBING]);
        h.holds("g.11").await;
        h.to_group(FAMILY, said(FAMILY, "after"), 0);
        h.to_group(CLIMBING, said(CLIMBING, "welcome"), 0);
        alice.receives(said(FAMILY, "after")).await;
        alice.receives(said(CLIMBING, "welcome")).await;
        h.settle().await;
        // Bob's list is not back yet.
        bob.has_nothing_queued();

        h.core.answer(BOB, &[BOOK_CLUB]);
        h.holds("g.12").await;
        h.to_group(FAMILY, said(FAMILY, "later"), 0);
        h.to_group(BOOK_CLUB, said(BOOK_CLUB, "chapter one"), 0);
        alice.receives(said(FAMILY, "later")).await;
        bob.receives(said(BOOK_CLUB, "chapter one")).await;
        h.settle().await;
        alice.has_nothing_queued();
        bob.has_nothing_queued();
    }
}
