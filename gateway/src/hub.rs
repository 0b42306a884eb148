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
//! is no longer delivered the group by the time its next message arrives.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::presence::{Device, Presence};
use bytes::Bytes;
use futures_util::StreamExt as _;
use prost::Message as _;
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
use crate::close;

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
    /// Counts membership notices, so a group list fetched before one arrived
    /// is not applied over it.
    membership_changes: u64,
    /// Membership notices may have been lost (the bus lagged): no group is
    /// delivered to the user until their list is fetched again.
    stale: bool,
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
    pub fn kick(&self, code: u16) {
        let _ = self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.token.cancel();
    }

    pub async fn kicked(&self) -> u16 {
        self.token.cancelled().await;
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
    /// Where a user's groups are asked for again after a lag.
    backend: Arc<dyn Backend>,
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
            user_id: user_id.0,
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
                membership_changes: 0,
                stale: false,
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
    /// returns false and the caller fetches again).
    pub fn set_groups(&self, user_id: UserId, groups: &[GroupId], mark: u64) -> bool {
        let mut local = self.lock();
        let gone: Vec<GroupId> = match local.users.get_mut(&user_id) {
            Some(entry) if entry.membership_changes != mark => return false,
            Some(entry) => {
                entry.stale = false;
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

    /// After a lag, asks for every local user's groups again, a few users at
    /// a time; each user's groups are delivered again once known.
    async fn refetch_memberships(self: Arc<Self>) {
        let users: Vec<UserId> = self.lock().users.keys().copied().collect();
        let refetch = |user: UserId| {
            let hub = self.clone();
            async move {
                for _ in 0..3 {
                    let mark = hub.membership_mark(user);
                    let Some(groups) = hub.backend.groups_of(user).await else {
                        continue;
                    };
                    if hub.set_groups(user, &groups, mark) {
                        return;
                    }
                }
                tracing::warn!(
                    user_id = user.0,
                    "groups not fetched after a lag; held back until the user's next session"
                );
            }
        };
        let mut pending =
            futures_util::stream::iter(users.into_iter().map(refetch)).buffer_unordered(16);
        while pending.next().await.is_some() {}
    }

    pub fn session_count(&self) -> i64 {
        self.sessions.get()
    }

    /// Ends the dispatch task.
    pub fn stop(&self) {
        self.stopped.cancel();
    }

    /// A session that could not be written to in time counts as slow too.
    pub fn count_slow_consumer(&self) {
        self.slow_consumers.inc();
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
                    // fetched again, so nobody removed meanwhile hears more.
                    for entry in local.users.values_mut() {
                        entry.stale = true;
                        entry.membership_changes += 1;
                    }
                    drop(local);
                    tokio::spawn(self.clone().refetch_memberships());
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
        // The connection whose request caused the event has its copy already.
        let origin = envelope.origin;
        let addressed = |handle: &&SessionHandle| origin == 0 || handle.connection != origin;
        let mut local = self.lock();
        match (topic, envelope.kind) {
            (Topic::Group(group), Some(bus_envelope::Kind::Event(event))) => {
                let frame = event_frame(event);
                let Some(members) = local.groups.get(&group) else {
                    return;
                };
                for handle in members
                    .iter()
                    .filter_map(|user| local.users.get(user))
                    .filter(|e| !e.stale)
                    .flat_map(|e| &e.devices)
                    .filter(addressed)
                {
                    self.queue(handle, frame.clone());
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
                // A session that started after the join already had the group
                // and heard the event on the group's topic.
                let group = GroupId(m.group_id);
                let known = m.joined && entry.groups.contains(&group);
                if m.joined {
                    local.join(self.subscriber.as_ref(), id, group);
                } else {
                    local.leave(self.subscriber.as_ref(), id, group);
                }
                if let Some(event) = m.event.filter(|_| !known) {
                    let frame = event_frame(event);
                    for handle in local.devices(id) {
                        self.queue(handle, frame.clone());
                    }
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
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow_consumers.inc();
                handle.kick.kick(close::SLOW_CONSUMER);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
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
