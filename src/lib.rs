//! The `superapp` server as a library: [`Application::build`] wires the rooms
//! for the tier the configuration asks for, binds its listener (port 0 allowed)
//! and reports the address it really bound; [`Application::run`] serves until
//! the shutdown token fires, then drains sessions and exits.
//!
//! - [`wiring`]: the adapters that plug one room's implementation into another
//!   room's port.
//! - [`config`]: the whole configuration, assembled from the rooms' sections.
//! - [`telemetry`]: the tracing subscriber, pretty or JSON by configuration.

pub mod config;
pub mod telemetry;
pub mod wiring;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use superapp_account::config::ProviderKind;
use superapp_account::contact_salt::ContactSalt;
use superapp_account::ports::VerificationProvider;
use superapp_account::sandbox::SandboxProvider;
use superapp_account::seal::RealNameKey;
use superapp_account::token::{TokenSigner, TokenVerifier};
use superapp_account::{
    Accounts, Erasure, LocalNearbyIndex, Nearby, NearbyIndex, Profiles, RealNames,
    RedisNearbyIndex, Social, SqliteAccountStore,
};
use superapp_chat::{Calls, Chat, SqliteChatStore};
use superapp_gateway::backend::{Local, Remote, core_handler};
use superapp_gateway::presence::{LocalPresence, Presence, RedisPresence};
use superapp_gateway::serve::{ServeLimits, serve};
use superapp_gateway::{AppState, Backend, Hub, Rooms};
use superapp_kit::bus::{InProcessBus, SharedBus};
use superapp_kit::clock::{SharedClock, SystemClock};
use superapp_kit::ids::IdGen;
use superapp_kit::metrics::{BATCH_SIZES, Registry};
use superapp_kit::ratelimit::{LocalLimiter, RateLimiter, RedisLimiter};
use superapp_kit::redis_bus::RedisBus;
use superapp_kit::rpc::{CoreLease, Handler, RpcClient, RpcServer};
use superapp_kit::tier_key::TierKey;
use superapp_media::{Media, ObjectStoreBlobs, SqliteMediaStore};
use superapp_wallet::service::WalletDeps;
use superapp_wallet::store::{PostgresWalletStore, SqliteWalletStore};
use superapp_wallet::{SandboxConfig, SandboxProvider as PaymentSandbox, Wallet, WalletStore};

use crate::config::{Config, Role};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What shutdown allows beyond `server.shutdown_drain_ms`: for HTTP requests
/// in hand to finish, and for sessions to write their last frames.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    /// How long a lease lives (`redis.lease_ttl_ms`): the longest the core's
    /// tasks are waited for at shutdown.
    lease_ttl: Duration,
    /// The timeouts and caps of the HTTP listener (`server.*`).
    limits: ServeLimits,
    /// The rooms this process runs, whose routes it serves (roles `all`, `core`).
    rooms: Option<Rooms>,
    core: CoreTasks,
}

impl Application {
    /// Opens the stores under the data dir, wires the rooms, and binds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_on(config, None).await
    }

    /// As [`Application::build`], on `bus` instead of the bus the
    /// configuration names (Redis with `redis.url`, else in process): the
    /// seam where tests put a bus that loses chosen messages.
    pub async fn build_with_bus(config: Config, bus: SharedBus) -> anyhow::Result<Self> {
        Self::build_on(config, Some(bus)).await
    }

    /// As [`Application::build`], with the rooms on `clock` instead of the
    /// system's: the seam where tests move time (a deletion's grace period)
    /// without waiting for it.
    pub async fn build_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        Self::build_with(config, None, clock, None).await
    }

    /// As [`Application::build`], with people nearby alone on `clock`: the
    /// seam where tests let shared positions expire and caps refill without
    /// waiting half an hour, while access tokens keep the system's time.
    pub async fn build_with_nearby_clock(
        config: Config,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        Self::build_with(config, None, Arc::new(SystemClock), Some(clock)).await
    }

    async fn build_on(config: Config, bus: Option<SharedBus>) -> anyhow::Result<Self> {
        Self::build_with(config, bus, Arc::new(SystemClock), None).await
    }

    /// Builds on `clock`, and people nearby on `nearby_clock` when given.
    async fn build_with(
        config: Config,
        bus: Option<SharedBus>,
        clock: SharedClock,
        nearby_clock: Option<SharedClock>,
    ) -> anyhow::Result<Self> {
        let role = config.server.role;
        let verifier = match role {
            Role::Gateway => {
                gateway_holds_no_real_name_key(&config)?;
                gateway_verifier(&config)?
            }
            Role::All | Role::Core => None,
        };
        let metrics = Arc::new(Registry::new());
        let ids = Arc::new(IdGen::new(config.server.node_id, clock.clone()));
        let tier = Tier::of(&config)?;
        let bus = match bus {
            Some(bus) => bus,
            None => connect_bus(tier.as_ref(), &metrics).await?,
        };
        let node = node_name(role);
        let shutdown = CancellationToken::new();
        // A core opens its stores only while it holds the core lease: a second
        // core on the same data stands by here until the first is gone.
        let core_lease = acquire_core_lease(&config, &node, &shutdown).await?;
        let (local, beside, erasure, backend): (_, _, _, Arc<dyn Backend>) = match role {
            Role::Gateway => (
                None,
                None,
                None,
                gateway_backend(&config, tier.as_ref(), &bus, &node, &metrics, verifier).await?,
            ),
            Role::All | Role::Core => {
                let nearby = NearbyParts {
                    index: nearby_index(&config).await?,
                    clock: nearby_clock.unwrap_or_else(|| clock.clone()),
                };
                let OpenRooms {
                    local,
                    real_names,
                    erasure,
                    profiles,
                    nearby,
                    media,
                } = open_rooms(&config, &metrics, &bus, &clock, &ids, nearby)?;
                index_phones(&profiles).await?;
                let local = Arc::new(local);
                (
                    Some(local.clone()),
                    Some((real_names, profiles, nearby, media.clone())),
                    Some((erasure, media)),
                    local,
                )
            }
        };
        let request_server = match (role, &local, &tier) {
            (Role::Core, Some(local), Some(tier)) => Some((
                RpcServer::new(
                    &tier.url,
                    &node,
                    Duration::from_millis(config.redis.lease_ttl_ms),
                    tier.key.clone(),
                    &metrics,
                )
                .with_fence_floor(wiring::fence_floor(local.chat.clone())),
                core_handler(local.clone()),
            )),
            _ => None,
        };
        let sweeps = erasure.map(|(erasure, media)| Sweeps {
            erasure: (
                erasure,
                Duration::from_millis(config.account.deletion_sweep_ms),
            ),
            media: (media, Duration::from_secs(config.media.sweep_secs)),
        });
        let mut core = start_core(request_server, sweeps, &bus, core_lease, &shutdown);
        let (presence, limits) = shared_state(&config, &clock).await?;
        let hub = Hub::start(
            bus.as_ref(),
            &metrics,
            presence.clone(),
            node,
            backend.clone(),
        );
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, ?role, "listening");
        // The wallet is built once the address is known: the sandbox
        // provider calls this server back on it.
        let wallet = match (&local, &beside) {
            (Some(local), Some((real_names, ..))) => {
                let rooms = (local.as_ref(), real_names.clone());
                let wallet = open_wallet(&config, addr, rooms, &bus, &clock, &ids).await?;
                core.wallet_jobs = start_wallet_jobs(&wallet, &config, &shutdown);
                Some(wallet)
            }
            _ => None,
        };
        let drain = Duration::from_millis(config.server.shutdown_drain_ms);
        let server = &config.server;
        let serve_limits = ServeLimits {
            header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(server.idle_timeout_ms),
            max_connections: server.max_connections,
            max_connections_per_address: server.max_connections_per_address,
            grace: drain + SHUTDOWN_GRACE,
        };
        Ok(Self {
            limits: serve_limits,
            core,
            listener,
            addr,
            rooms: local.zip(beside).zip(wallet).map(
                |((local, (real_names, profiles, nearby, media)), wallet)| Rooms {
                    accounts: local.accounts.clone(),
                    social: local.social.clone(),
                    real_names,
                    profiles,
                    chat: local.chat.clone(),
                    calls: local.calls.clone(),
                    presence,
                    nearby,
                    media,
                    wallet,
                },
            ),
            lease_ttl: Duration::from_millis(config.redis.lease_ttl_ms),
            state: AppState {
                backend,
                hub,
                limits,
                metrics,
                config: Arc::new(config.gateway),
                drain,
                max_body_bytes: config.server.max_body_bytes,
                body_timeout: Duration::from_millis(config.server.body_timeout_ms),
                shutdown,
                sessions: TaskTracker::new(),
            },
        })
    }

    /// The address really bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cancel it to shut down: stop accepting, drain, close sessions with 1012.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let state = self.state.clone();
        let router = superapp_gateway::router(self.state, self.rooms);
        let shutdown = state.shutdown.clone();
        use axum::serve::ListenerExt as _;
        // Frames are small and each should leave at once, not wait for the
        // peer's ACK of the one before (Nagle with delayed ACKs costs up to 40 ms).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        serve(listener, router, self.limits, shutdown, &state.metrics).await;
        tracing::info!(
            sessions = state.hub.session_count(),
            "stopped accepting; draining sessions"
        );
        state.sessions.close();
        let deadline = state.drain + SHUTDOWN_GRACE;
        if tokio::time::timeout(deadline, state.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions did not close within the deadline");
        }
        state.hub.stop();
        self.core.stop(self.lease_ttl).await;
        tracing::info!("shut down");
        Ok(())
    }
}

/// Where the processes of a tier meet: Redis, and the key they share.
struct Tier {
    url: String,
    key: TierKey,
}

impl Tier {
    /// None without `redis.url`: one process, nothing to meet.
    fn of(config: &Config) -> anyhow::Result<Option<Self>> {
        let Some(url) = &config.redis.url else {
            return Ok(None);
        };
        Ok(Some(Self {
            url: url.expose().clone(),
            key: config.redis.tier_key()?,
        }))
    }
}

/// Redis pub/sub when Redis is configured, else the in-process bus.
async fn connect_bus(tier: Option<&Tier>, metrics: &Registry) -> anyhow::Result<SharedBus> {
    Ok(match tier {
        Some(tier) => {
            let bus = RedisBus::connect(&tier.url, tier.key.clone(), metrics)
                .await
                .context("connecting to redis (redis.url)")?;
            tracing::info!("bus: redis pub/sub");
            Arc::new(bus)
        }
        None => Arc::new(InProcessBus::new()),
    })
}

/// Names this process's reply topic and its leases: random, so two
/// processes never share one, whatever their node ids and start times.
fn node_name(role: Role) -> String {
    format!(
        "{}-{}",
        format!("{role:?}").to_lowercase(),
        &superapp_account::token::random_token()[..16]
    )
}

/// On a core with Redis, waits until this process holds the core lease; fails
/// if `shutdown` fires first. Other roles hold none.
async fn acquire_core_lease(
    config: &Config,
    node: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<CoreLease>> {
    match (config.server.role, &config.redis.url) {
        (Role::Core, Some(url)) => {
            let ttl = Duration::from_millis(config.redis.lease_ttl_ms);
            match CoreLease::acquire(url.expose(), node, ttl, shutdown).await? {
                Some(lease) => Ok(Some(lease)),
                None => anyhow::bail!("stopped while standing by"),
            }
        }
        _ => Ok(None),
    }
}

/// A gateway's backend: the core, reached over Redis.
async fn gateway_backend(
    config: &Config,
    tier: Option<&Tier>,
    bus: &SharedBus,
    node: &str,
    metrics: &Registry,
    verifier: Option<TokenVerifier>,
) -> anyhow::Result<Arc<dyn Backend>> {
    let tier = tier.context("a gateway meets the core through Redis: set redis.url")?;
    let rpc = RpcClient::connect(&tier.url, bus.as_ref(), node, tier.key.clone(), metrics)
        .await
        .context("connecting to redis for core requests")?
        .with_max_waiting(config.redis.max_waiting_requests);
    let timeout = Duration::from_millis(config.redis.request_timeout_ms);
    Ok(Arc::new(Remote::new(rpc, timeout, verifier)))
}

/// The core's background work, which outlives the sessions at shutdown.
struct CoreTasks {
    /// The core's request server, which gives its shard leases up when it stops.
    request_server: Option<JoinHandle<()>>,
    /// The sweep that erases accounts whose grace period ended (roles `all`
    /// and `core`); it stops at shutdown, after the sweep in hand.
    erasure: Option<JoinHandle<()>>,
    /// The sweep that collects unreferenced media and expired uploads
    /// (roles `all` and `core`); it stops as the erasure sweep does.
    media_sweep: Option<JoinHandle<()>>,
    /// The wallet's expiry of transfers and red packets, and its sweep of
    /// old idempotency keys (roles `all` and `core`).
    wallet_jobs: Vec<JoinHandle<()>>,
    /// The core lease's keeper, and the token that tells it the core has stopped.
    lease_keeper: Option<JoinHandle<()>>,
    stopped: CancellationToken,
}

impl CoreTasks {
    /// Waits for the request server to stop, then lets the lease keeper give
    /// the core lease up; each gets at most `ttl`.
    async fn stop(self, ttl: Duration) {
        if let Some(server) = self.request_server {
            let _ = tokio::time::timeout(ttl, server).await;
        }
        if let Some(erasure) = self.erasure {
            let _ = tokio::time::timeout(ttl, erasure).await;
        }
        if let Some(media_sweep) = self.media_sweep {
            let _ = tokio::time::timeout(ttl, media_sweep).await;
        }
        for job in self.wallet_jobs {
            let _ = tokio::time::timeout(ttl, job).await;
        }
        self.stopped.cancel();
        if let Some(keeper) = self.lease_keeper {
            let _ = tokio::time::timeout(ttl, keeper).await;
        }
    }
}

/// The core's periodic sweeps, each with how often it runs.
struct Sweeps {
    erasure: (Arc<Erasure>, Duration),
    media: (Arc<Media>, Duration),
}

/// Starts what a core runs beside its rooms: the server of the gateways'
/// requests (with the core's handler), the sweeps of deletions due and of
/// media nothing references, and the keeper of the core lease.
fn start_core(
    request_server: Option<(RpcServer, Handler)>,
    sweeps: Option<Sweeps>,
    bus: &SharedBus,
    lease: Option<CoreLease>,
    shutdown: &CancellationToken,
) -> CoreTasks {
    let (erasure, media_sweep) = match sweeps {
        Some(Sweeps {
            erasure: (erasure, every),
            media: (media, media_every),
        }) => (
            Some(tokio::spawn(sweep(
                "deleted accounts",
                every,
                shutdown.clone(),
                move || {
                    let erasure = erasure.clone();
                    async move { erasure.sweep().await }
                },
            ))),
            Some(tokio::spawn(sweep(
                "media",
                media_every,
                shutdown.clone(),
                move || {
                    let media = media.clone();
                    async move { media.sweep().await }
                },
            ))),
        ),
        None => (None, None),
    };
    let request_server = request_server.map(|(server, handler)| {
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = server.run(bus, handler, shutdown).await {
                tracing::error!(error = %e, "core request server stopped");
            }
        })
    });
    let stopped = CancellationToken::new();
    let lease_keeper =
        lease.map(|lease| tokio::spawn(lease.keep(shutdown.clone(), stopped.clone())));
    CoreTasks {
        request_server,
        erasure,
        media_sweep,
        wallet_jobs: Vec::new(),
        lease_keeper,
        stopped,
    }
}

/// Runs the sweep `run` every `every` until shutdown. A sweep that fails is
/// logged and tried again at the next tick. Each may be cut short by a stop
/// and done again, and several nodes may sweep at once: the erasure of
/// deleted accounts (`Erasure`) and the collection of media nothing
/// references (each object claimed by the write that dooms it,
/// `superapp_media::store`) are both idempotent.
async fn sweep<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    what: &'static str,
    every: Duration,
    shutdown: CancellationToken,
    run: impl Fn() -> F,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = run().await {
            tracing::warn!(error = %e, sweep = what, "a sweep failed; trying again later");
        }
    }
}

/// People nearby's index: in memory in one process, in Redis (shared by
/// every process of the tier, so a standby core finds the same positions)
/// when Redis is configured; as presence is.
async fn nearby_index(config: &Config) -> anyhow::Result<Arc<dyn NearbyIndex>> {
    Ok(match &config.redis.url {
        Some(url) => Arc::new(
            RedisNearbyIndex::connect(url.expose())
                .await
                .context("connecting to redis for people nearby")?,
        ),
        None => Arc::new(LocalNearbyIndex::new()),
    })
}

/// What [`open_rooms`] builds.
struct OpenRooms {
    local: Local,
    real_names: Arc<RealNames>,
    erasure: Arc<Erasure>,
    profiles: Arc<Profiles>,
    nearby: Arc<Nearby>,
    media: Arc<Media>,
}

/// What people nearby is built on besides the account store.
struct NearbyParts {
    index: Arc<dyn NearbyIndex>,
    clock: SharedClock,
}

/// Presence and the per-user rate limit: in memory in one process, in Redis
/// (shared by every gateway and the core) when Redis is configured.
async fn shared_state(
    config: &Config,
    clock: &SharedClock,
) -> anyhow::Result<(Arc<dyn Presence>, Arc<dyn RateLimiter>)> {
    let ttl = Duration::from_secs(config.gateway.presence_ttl_secs.max(1));
    let (rate, burst) = (
        config.gateway.user_rate_per_sec,
        config.gateway.user_rate_per_sec.saturating_mul(2),
    );
    Ok(match &config.redis.url {
        Some(url) => {
            let timeout = Duration::from_millis(config.redis.request_timeout_ms);
            (
                Arc::new(
                    RedisPresence::connect(url.expose(), clock.clone(), ttl)
                        .await
                        .context("connecting to redis for presence")?,
                ),
                Arc::new(
                    RedisLimiter::connect(url.expose(), rate, burst, timeout)
                        .await
                        .context("connecting to redis for rate limits")?,
                ),
            )
        }
        None => (
            Arc::new(LocalPresence::new(clock.clone(), ttl)),
            Arc::new(LocalLimiter::new(rate, burst)),
        ),
    })
}

/// Opens the stores under the data dir and builds the account, chat and
/// media rooms, real-name verification, the erasure of deleted accounts,
/// profiles and people nearby.
fn open_rooms(
    config: &Config,
    metrics: &Arc<Registry>,
    bus: &SharedBus,
    clock: &SharedClock,
    ids: &Arc<IdGen>,
    nearby: NearbyParts,
) -> anyhow::Result<OpenRooms> {
    let data_dir = config.server.data_dir.clone();
    create_data_dir(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let signer = token_signer(config)?;
    if let Some(configured) = &config.auth.token_public_key {
        let configured = TokenVerifier::from_base64(configured, config.auth.access_ttl_ms())
            .context("auth.token_public_key")?;
        anyhow::ensure!(
            configured.public_key() == signer.verifier().public_key(),
            "auth.token_public_key is not the public key of this core's token key \
             (auth.token_key or token.key in the data dir); `superapp token-public-key` \
             prints the right one"
        );
    }
    tracing::info!(
        token_public_key = %signer.verifier().public_key(),
        "access tokens are signed here; gateways verify them with this public key \
         (auth.token_public_key)"
    );
    let batch_sizes = |store: &str| {
        Some(metrics.histogram_with(
            "store_commit_batch_size",
            "Writes committed per SQLite transaction (group commit).",
            BATCH_SIZES,
            &[("store", store)],
        ))
    };
    let account_store = Arc::new(
        SqliteAccountStore::open(&data_dir.join("account.db"), batch_sizes("account"))
            .context("opening account.db")?,
    );
    let social = Arc::new(Social::new(
        account_store.clone(),
        bus.clone(),
        clock.clone(),
        config.social.clone(),
    ));
    let real_names = Arc::new(RealNames::new(
        account_store.clone(),
        real_name_key(config)?,
        verification_provider(config),
        clock.clone(),
        ids.clone(),
        &config.real_name,
    ));
    let sight = Arc::new(wiring::RoomSight::default());
    let media = open_media(
        config,
        &data_dir,
        clock,
        sight.clone(),
        batch_sizes("media"),
    )?;
    let salt = contact_salt(config)?;
    let profiles = Arc::new(
        Profiles::new(
            account_store.clone(),
            salt.clone(),
            clock.clone(),
            config.social.clone(),
        )
        .with_media(Arc::new(wiring::ProfileMedia::new(media.clone()))),
    );
    let nearby = Arc::new(
        Nearby::new(
            nearby.index,
            account_store.clone(),
            account_store.clone(),
            nearby.clock,
            config.nearby.clone(),
        )
        .with_invisible_default(config.social.invisible),
    );
    let accounts = Arc::new(
        Accounts::new(
            account_store.clone(),
            signer,
            bus.clone(),
            clock.clone(),
            ids.clone(),
            config.auth.clone(),
            salt,
        )?
        .with_deletion_grace_ms(config.account.deletion_grace_ms()),
    );
    let chat_store = SqliteChatStore::open(&data_dir.join("chat.db"), batch_sizes("chat"))
        .context("opening chat.db")?
        .with_group_limits(config.chat.group_limits());
    let directory = Arc::new(wiring::AccountDirectory::new(
        accounts.clone(),
        social.clone(),
        profiles.clone(),
    ));
    let chat = Arc::new(
        Chat::new(
            Arc::new(chat_store),
            directory.clone(),
            bus.clone(),
            clock.clone(),
            ids.clone(),
            config.chat.max_pull_page,
            metrics,
        )
        .with_invitation_ttl_ms(config.chat.invitation_ttl_ms())
        .with_media(Some(Arc::new(wiring::ChatMedia::new(media.clone())))),
    );
    sight.see_through(chat.clone(), profiles.clone());
    let erasure = Arc::new(Erasure::new(
        account_store,
        social.clone(),
        Arc::new(wiring::ChatDepartures::new(chat.clone())),
        clock.clone(),
    ));
    tracing::info!(data_dir = %data_dir.display(), "stores open");
    let calls = Arc::new(Calls::new(
        chat.clone(),
        directory,
        bus.clone(),
        clock.clone(),
        ids.clone(),
        config.calls.clone(),
    ));
    let local = Local {
        accounts,
        social,
        chat,
        calls,
    };
    Ok(OpenRooms {
        local,
        real_names,
        erasure,
        profiles,
        nearby,
        media,
    })
}

/// The media room: its store in the data dir, its blobs on the filesystem
/// under `<data_dir>/media/blobs` or in S3 (`media.s3`), uploads staged
/// under `<data_dir>/media/staging`.
fn open_media(
    config: &Config,
    data_dir: &std::path::Path,
    clock: &SharedClock,
    sight: Arc<wiring::RoomSight>,
    batch_sizes: Option<Arc<superapp_kit::metrics::Histogram>>,
) -> anyhow::Result<Arc<Media>> {
    let store = SqliteMediaStore::open(&data_dir.join("media.db"), batch_sizes)
        .context("opening media.db")?;
    let blobs = match &config.media.s3 {
        Some(s3) => {
            tracing::info!(bucket = %s3.bucket, "media blobs: S3");
            ObjectStoreBlobs::s3(s3).context("media.s3")?
        }
        None => ObjectStoreBlobs::filesystem(&data_dir.join("media").join("blobs"))
            .context("media blobs directory")?,
    };
    let media = Media::new(
        Arc::new(store),
        Arc::new(blobs),
        sight,
        clock.clone(),
        link_key(config)?,
        data_dir.join("media").join("staging"),
        &config.media,
    )
    .context("media staging directory")?;
    Ok(Arc::new(media))
}

/// The wallet: its ledger in PostgreSQL (`wallet.postgres_url`) or a SQLite
/// file in the data dir, the sandbox payment provider calling back this
/// server at `addr` (or `wallet.callback_url`), and the account and chat
/// rooms behind its ports.
async fn open_wallet(
    config: &Config,
    addr: SocketAddr,
    (local, real_names): (&Local, Arc<RealNames>),
    bus: &SharedBus,
    clock: &SharedClock,
    ids: &Arc<IdGen>,
) -> anyhow::Result<Arc<Wallet>> {
    let data_dir = &config.server.data_dir;
    let (store, ledger) = open_wallet_store(config).await?;
    let wallet = &config.wallet;
    let callback_url = match &wallet.callback_url {
        Some(url) => url.clone(),
        None => {
            let host = match addr.ip() {
                ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
                ip => ip,
            };
            format!(
                "http://{}/v1/wallet/callback",
                SocketAddr::new(host, addr.port())
            )
        }
    };
    let secret = match &wallet.provider_secret {
        Some(secret) => secret.expose().as_bytes().to_vec(),
        None => superapp_account::key_file::KeyFile {
            guards: "it signs the payment provider's callbacks",
            holds: "the provider key is 32 random bytes",
        }
        .read_or_create(&data_dir.join("wallet_provider.key"))
        .context("wallet provider key file")?
        .to_vec(),
    };
    let mut sandbox = SandboxConfig::new(secret, callback_url);
    sandbox.payout_delay_ms = wallet.sandbox_payout_delay_ms;
    sandbox.window_ms = i64::try_from(wallet.callback_window_secs * 1000).unwrap_or(i64::MAX);
    sandbox.deliveries = wallet.sandbox_deliveries;
    let sandbox =
        Arc::new(PaymentSandbox::new(sandbox, clock.clone()).context("wallet.callback_url")?);
    tracing::info!(ledger, "wallet: sandbox payment provider");
    Ok(Arc::new(Wallet::new(WalletDeps {
        store,
        provider: sandbox.clone(),
        sandbox: Some(sandbox),
        people: Arc::new(wiring::WalletPeople::new(
            local.accounts.clone(),
            real_names,
        )),
        chats: Arc::new(wiring::WalletChats::new(
            local.social.clone(),
            local.chat.clone(),
            clock.clone(),
        )),
        bus: bus.clone(),
        clock: clock.clone(),
        ids: ids.clone(),
        config: wallet.clone(),
    })))
}

/// The wallet's ledger: PostgreSQL when `wallet.postgres_url` is set, else
/// `wallet.db` in the data dir; with the engine's name, for the boot log.
async fn open_wallet_store(
    config: &Config,
) -> anyhow::Result<(Arc<dyn WalletStore>, &'static str)> {
    if let Some(url) = &config.wallet.postgres_url {
        // The URL holds a password: the error names the key, not the URL.
        let store = PostgresWalletStore::connect(url.expose(), config.wallet.postgres_pool)
            .await
            .context("opening the wallet's PostgreSQL database (wallet.postgres_url)")?;
        return Ok((Arc::new(store), "postgres"));
    }
    let data_dir = &config.server.data_dir;
    create_data_dir(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let store =
        SqliteWalletStore::open(&data_dir.join("wallet.db")).context("opening wallet.db")?;
    Ok((Arc::new(store), "sqlite"))
}

/// `superapp wallet reconcile`: checks the ledger in the configured store
/// (the double-entry sum, every balance against its entries, no wallet
/// below zero, every provider order against its entries).
pub async fn reconcile_wallet(
    config: &Config,
) -> anyhow::Result<superapp_wallet::service::Reconciliation> {
    let (store, _) = open_wallet_store(config).await?;
    let audit = store.audit().await.context("reading the ledger")?;
    Ok(superapp_wallet::service::reconcile(&audit))
}

/// Runs the wallet's expiry pass every `wallet.expiry_scan_ms` and its
/// sweep of old idempotency keys every hour, until shutdown.
fn start_wallet_jobs(
    wallet: &Arc<Wallet>,
    config: &Config,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let expiring = wallet.clone();
    let sweeping = wallet.clone();
    vec![
        tokio::spawn(sweep(
            "wallet expiry",
            Duration::from_millis(config.wallet.expiry_scan_ms),
            shutdown.clone(),
            move || {
                let wallet = expiring.clone();
                async move { wallet.expire_due().await }
            },
        )),
        tokio::spawn(sweep(
            "wallet keys",
            Duration::from_secs(3_600),
            shutdown.clone(),
            move || {
                let wallet = sweeping.clone();
                async move { wallet.sweep_keys().await }
            },
        )),
    ]
}

/// The key download links are signed with: `media.link_key`, or else the
/// key file in the data dir (created on first start).
fn link_key(config: &Config) -> anyhow::Result<superapp_media::LinkKey> {
    use base64::Engine as _;
    let bytes = match &config.media.link_key {
        Some(key) => base64::engine::general_purpose::STANDARD
            .decode(key.expose().trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .context("media.link_key is base64 of 32 random bytes")?,
        None => superapp_account::key_file::KeyFile {
            guards: "it signs every media download link",
            holds: "the link key is 32 random bytes",
        }
        .read_or_create(&config.server.data_dir.join("media_link.key"))
        .context("media link key file")?,
    };
    Ok(superapp_media::LinkKey::new(bytes))
}

/// Brings contact matching's index of phone hashes up to the salt, before
/// the API is served: on the first start after an upgrade, or with a new salt.
async fn index_phones(profiles: &Profiles) -> anyhow::Result<()> {
    let indexed = profiles
        .index_phones()
        .await
        .context("indexing phone hashes for contact matching")?;
    if indexed > 0 {
        tracing::info!(users = indexed, "phone hashes indexed for contact matching");
    }
    Ok(())
}

/// The salt of contact matching: `social.contact_salt`, or else the salt
/// file in the data dir (created on first start).
fn contact_salt(config: &Config) -> anyhow::Result<ContactSalt> {
    match &config.social.contact_salt {
        Some(salt) => ContactSalt::from_base64(salt.expose())
            .map_err(|e| anyhow::anyhow!("social.contact_salt {e}: base64 of 32 random bytes")),
        None => ContactSalt::load_or_create(&config.server.data_dir.join("contact_salt.key"))
            .context("contact salt file"),
    }
}

/// The key that seals real-name data: `real_name.key`, or else the key file
/// in the data dir (created on first start).
fn real_name_key(config: &Config) -> anyhow::Result<RealNameKey> {
    match &config.real_name.key {
        Some(key) => RealNameKey::from_base64(key.expose())
            .map_err(|e| anyhow::anyhow!("real_name.key {e}: base64 of 32 random bytes")),
        None => RealNameKey::load_or_create(&config.server.data_dir.join("real_name.key"))
            .context("real-name key file"),
    }
}

/// The verification provider `real_name.provider` names.
fn verification_provider(config: &Config) -> Option<Arc<dyn VerificationProvider>> {
    match config.real_name.provider {
        ProviderKind::Sandbox => {
            tracing::warn!(
                "real-name verification uses the sandbox provider, which consults no registry \
                 and verifies any well-formed ID number: for development only \
                 (real_name.provider)"
            );
            Some(Arc::new(SandboxProvider::new()))
        }
        ProviderKind::Disabled => None,
    }
}

/// A gateway seals and reads no real-name data: given the key that unseals
/// every ID number, it refuses to start rather than hold it for nothing.
fn gateway_holds_no_real_name_key(config: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.real_name.key.is_none(),
        "real_name.key unseals every stored ID number and only the core uses it: \
         remove it from this gateway's configuration"
    );
    Ok(())
}

/// Creates the data directory, if missing, open to its owner only (0700):
/// it holds the stores, the token key and the real-name key. An existing one is left as it is.
fn create_data_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// The core's access-token signer: `auth.token_key`, or else the key file in
/// the data dir (created on first start).
fn token_signer(config: &Config) -> anyhow::Result<TokenSigner> {
    let lifetime = config.auth.access_ttl_ms();
    match &config.auth.token_key {
        Some(key) => TokenSigner::from_base64(key.expose(), lifetime)
            .map_err(|e| anyhow::anyhow!("auth.token_key {e}: base64 of a 32-byte Ed25519 seed")),
        None => TokenSigner::load_or_create(&config.server.data_dir.join("token.key"), lifetime)
            .context("token key file"),
    }
}

/// The public key of the core's access-token key, base64: the value of a
/// gateway's `auth.token_public_key`. Reads `auth.token_key`, or else the key
/// file in the data dir, which it never creates: a core makes it on first start.
pub fn token_public_key(config: &Config) -> anyhow::Result<String> {
    let lifetime = config.auth.access_ttl_ms();
    let signer = match &config.auth.token_key {
        Some(_) => token_signer(config)?,
        None => {
            let path = config.server.data_dir.join("token.key");
            TokenSigner::load(&path, lifetime).with_context(|| {
                format!(
                    "reading {} (start the core once to create it, or set auth.token_key)",
                    path.display()
                )
            })?
        }
    };
    Ok(signer.verifier().public_key())
}

/// A gateway's token verifier: `auth.token_public_key`, if set. A gateway
/// given the core's private key is refused: whoever holds it can mint a token
/// for any user, and a gateway needs only to verify.
fn gateway_verifier(config: &Config) -> anyhow::Result<Option<TokenVerifier>> {
    anyhow::ensure!(
        config.auth.token_key.is_none(),
        "auth.token_key is the core's private signing key and a gateway must not hold it: \
         remove it from this gateway and set auth.token_public_key instead (the core logs \
         it at start; `superapp token-public-key` prints it)"
    );
    config
        .auth
        .token_public_key
        .as_deref()
        .map(|key| TokenVerifier::from_base64(key, config.auth.access_ttl_ms()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("auth.token_public_key {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_public_key_is_printed_from_the_configured_key_or_the_key_file_never_made_here() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_path_buf();
        let err = format!("{:#}", token_public_key(&config).unwrap_err());
        assert!(err.contains("start the core once"), "{err}");
        assert!(!dir.path().join("token.key").exists());
        let signer = token_signer(&config).unwrap();
        assert_eq!(
            token_public_key(&config).unwrap(),
            signer.verifier().public_key()
        );
        let seed = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        config.auth.token_key = Some(superapp_kit::secret::Secret::new(seed.into()));
        assert_eq!(
            token_public_key(&config).unwrap(),
            TokenSigner::from_seed(&[1; 32], 900_000)
                .verifier()
                .public_key()
        );
    }

    #[test]
    fn a_gateway_given_the_real_name_key_refuses_it() {
        let mut config = Config::default();
        assert!(gateway_holds_no_real_name_key(&config).is_ok());
        config.real_name.key = Some(superapp_kit::secret::Secret::new(
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".into(),
        ));
        let err = gateway_holds_no_real_name_key(&config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("real_name.key"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_new_data_dir_is_its_owner_s_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        create_data_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
