//! `superapp-cli`: a scripting client for the superapp server.
//!
//! Output is a contract for scripts: each command prints JSON objects one per
//! line on stdout (the wallet's commands, `listen`, `conversations` and
//! `friends` print human lines unless `--json`), and a failure prints
//! `{"error": code, "message": ..}` on stderr and exits 1. The session (token pair) lives in
//! `<profile>/session.json`, readable by the owner only; what `listen` has
//! already seen lives in `<profile>/sync.json`.

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_with::serde_as;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use superapp_client::proto::v1::{
    File, Image, Location, Message, MessageBody, SendMessage, event::Kind as EventKind,
    message_body::Content,
};
use superapp_client::proto::{ConversationId, GroupId};
use superapp_client::sync::all_conversations;
use superapp_client::{
    ClientError, Connection, Gap, HttpClient, LinkRequest, MediaFacts, PrivacySettings,
    ProfileUpdate, SyncState, Tokens, U64AsString, Upload, accept_live, catch_up, contact_hash,
    new_client_msg_id, pull_after,
};
use tokio::time::Instant;

#[path = "superapp-cli/calls.rs"]
mod calls;
#[path = "superapp-cli/wallet.rs"]
mod wallet;

/// Refresh when the access token has less than this left, so it cannot
/// expire between the check and the call that uses it.
const REFRESH_MARGIN_MS: i64 = 60_000;
/// An idle listener pings this often so the server's idle timeout (4000)
/// does not end it.
const PING_EVERY: Duration = Duration::from_secs(20);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(
    name = "superapp-cli",
    version,
    about = "Scripting client for a superapp server"
)]
struct Cli {
    /// Base URL of the server (its HTTP API).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Base URL of a gateway for the WebSocket, when it is not the server
    /// (the Redis tier: gateways hold sessions, the core serves the API).
    #[arg(long, global = true)]
    ws: Option<String>,
    /// Directory holding session.json and sync.json.
    #[arg(long, global = true, default_value = "./.superapp-cli")]
    profile: PathBuf,
    #[command(subcommand)]
    command: Command,
}

/// Whom a message goes to: a user, a group, or a conversation by its id.
#[derive(clap::Args)]
struct Recipient {
    #[arg(long, required_unless_present_any = ["conversation", "group"], conflicts_with_all = ["conversation", "group"])]
    to: Option<u64>,
    #[arg(long, conflicts_with = "group")]
    conversation: Option<String>,
    #[arg(long)]
    group: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Create an account; prints it.
    Register {
        #[arg(long)]
        phone: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        name: String,
    },
    /// Log in and save the session; prints user_id and session_id.
    Login {
        #[arg(long)]
        phone: String,
        #[arg(long)]
        password: String,
    },
    /// End the saved session on the server and forget it.
    Logout,
    /// Send a text to a user, a group or a conversation; prints the ack.
    Send {
        #[command(flatten)]
        to: Recipient,
        #[arg(long)]
        text: String,
    },
    /// Send a location to a user, a group or a conversation; prints the ack.
    SendLocation {
        #[command(flatten)]
        to: Recipient,
        /// Latitude in degrees, -90 to 90.
        #[arg(long, allow_negative_numbers = true)]
        lat: f64,
        /// Longitude in degrees, -180 to 180.
        #[arg(long, allow_negative_numbers = true)]
        lon: f64,
        /// The place's name (at most 256 bytes).
        #[arg(long, default_value = "")]
        name: String,
        /// The place's address (at most 256 bytes).
        #[arg(long, default_value = "")]
        address: String,
    },
    /// Upload a picture (JPEG, PNG, WebP, GIF or HEIC) and send it; prints
    /// the media id and the ack. Its location and other metadata are
    /// removed unless --keep-exif.
    SendImage {
        #[command(flatten)]
        to: Recipient,
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        keep_exif: bool,
    },
    /// Upload any file and send it; prints the media id and the ack.
    SendFile {
        #[command(flatten)]
        to: Recipient,
        #[arg(long)]
        path: PathBuf,
        /// The name recipients see (default: the file's own name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Save a media object you uploaded, one a message you may see holds
    /// (name the message by --conversation and --seq), or a user's avatar
    /// (`media:<id>`; name them by --user); prints what was saved.
    Download {
        #[arg(long)]
        media: String,
        #[arg(long, requires = "seq", conflicts_with = "user")]
        conversation: Option<String>,
        #[arg(long, requires = "conversation")]
        seq: Option<u64>,
        #[arg(long)]
        user: Option<u64>,
        /// The picture's thumbnail instead of the picture.
        #[arg(long)]
        thumbnail: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// Groups: create, add members, show, list members, remove, leave; invitations: list, accept, decline.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Calls: invite a user, accept, decline or hang up; prints the call's events as JSON lines.
    Call {
        #[command(subcommand)]
        command: calls::CallCommand,
    },
    /// The wallet: balance, top up, payment PIN, withdraw, history.
    Wallet {
        #[command(subcommand)]
        command: wallet::WalletCommand,
    },
    /// Send money to a user (`transfer --to ID --amount FEN`), held until
    /// they accept or decline it; or accept, decline or show a transfer.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Transfer {
        #[command(subcommand)]
        command: Option<wallet::TransferCommand>,
        /// The user to send to.
        #[arg(long, required = true)]
        to: Option<u64>,
        /// In fen (100 fen = 1 yuan).
        #[arg(long, required = true)]
        amount: Option<i64>,
        /// A note the recipient sees.
        #[arg(long, default_value = "")]
        memo: String,
        /// The payment PIN; asked for without echo when absent.
        #[arg(long)]
        pin: Option<String>,
        /// Print the transfer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Red packets: send one into a group or a chat, grab your share, show one.
    Redpacket {
        #[command(subcommand)]
        command: wallet::RedPacketCommand,
    },
    /// Print missed messages from others, then follow new ones.
    Listen {
        /// One JSON object per message instead of a human line.
        #[arg(long)]
        json: bool,
        /// Exit after printing this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Exit (successfully) after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// List conversations, most recent first.
    Conversations {
        #[arg(long)]
        json: bool,
    },
    /// Print the logged-in account.
    Me,
    /// Friend requests: send, accept, decline, list; remove, hide, unhide or find a friend.
    Friend {
        #[command(subcommand)]
        command: FriendCommand,
    },
    /// Print your friends, one per line (the whole contact list).
    Friends {
        #[arg(long)]
        json: bool,
    },
    /// Block a user: they can no longer message you, ask to be friends or add or invite you to groups.
    Block {
        #[arg(long)]
        user: u64,
    },
    /// Unblock a user.
    Unblock {
        #[arg(long)]
        user: u64,
    },
    /// Privacy settings.
    Privacy {
        #[command(subcommand)]
        command: PrivacyCommand,
    },
    /// Your profile: show it, or change parts of it.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Look a user up by id, handle or phone number; prints what you may see.
    Lookup {
        #[arg(long, conflicts_with_all = ["handle", "phone"], required_unless_present_any = ["handle", "phone"])]
        id: Option<u64>,
        #[arg(long, conflicts_with = "phone")]
        handle: Option<String>,
        #[arg(long)]
        phone: Option<String>,
    },
    /// Contact matching: which of these numbers (E.164) belong to users you
    /// may find; the numbers are hashed with the server's salt before they
    /// are sent. Prints one line per user found.
    Match {
        /// Comma-separated E.164 numbers.
        #[arg(long, value_delimiter = ',', required = true)]
        phones: Vec<String>,
    },
    /// Change your password: every other session ends at once; this one
    /// stays, and its new tokens are saved.
    Password {
        #[arg(long)]
        current: String,
        #[arg(long)]
        new: String,
    },
    /// Your sessions (devices signed in): list them, or end one.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Delete your account (restorable within its grace period), or restore it.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Print users' names, one per line; a deleted account has `deleted` set.
    Names {
        /// Comma-separated user ids (at most 100).
        #[arg(long, value_delimiter = ',', required = true)]
        users: Vec<u64>,
    },
    /// People nearby: share your location (kept for 30 minutes as a cell of
    /// about 100 m), then print who else shares near it, one per line,
    /// nearest first. `nearby clear` stops sharing.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Nearby {
        #[command(subcommand)]
        command: Option<NearbyCommand>,
        /// Your latitude in degrees, -85 to 85.
        #[arg(long, required = true, allow_negative_numbers = true)]
        lat: Option<f64>,
        /// Your longitude in degrees, -180 to 180.
        #[arg(long, required = true, allow_negative_numbers = true)]
        lon: Option<f64>,
        /// Search radius in metres (the server's default: 5000).
        #[arg(long)]
        radius: Option<u32>,
        /// At most this many people (the server's default: 20).
        #[arg(long)]
        limit: Option<u32>,
    },
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Print your profile.
    Show,
    /// Change the parts given, all of them or none.
    Set {
        #[arg(long)]
        name: Option<String>,
        /// An https URL, or media:MEDIA_ID of a picture you uploaded; empty
        /// removes it.
        #[arg(long)]
        avatar: Option<String>,
        #[arg(long)]
        signature: Option<String>,
        #[arg(long)]
        region: Option<String>,
        /// unset, female, male or other.
        #[arg(long)]
        gender: Option<String>,
        /// 6 to 20 letters, digits, _ or -, the first a letter; once in 30 days.
        #[arg(long)]
        handle: Option<String>,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Print your live sessions, one per line, the most recently active
    /// first; `current` marks the saved one.
    List,
    /// End a session: its WebSockets close and its tokens stop working.
    Revoke {
        #[arg(long)]
        session: u64,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Ask for your account's deletion: every session ends (the saved one is
    /// forgotten); prints when the account will be erased.
    Delete {
        #[arg(long)]
        password: String,
    },
    /// Restore your account within its grace period, and log in (the session
    /// is saved).
    Restore {
        #[arg(long)]
        phone: String,
        #[arg(long)]
        password: String,
    },
}

#[derive(Subcommand)]
enum NearbyCommand {
    /// Stop sharing your location: nobody finds you nearby any more.
    Clear,
}

#[derive(Subcommand)]
enum FriendCommand {
    /// Ask a user to be friends; prints `requested`, or `friends` if they had asked you.
    Request {
        #[arg(long)]
        to: u64,
        #[arg(long, default_value = "")]
        greeting: String,
    },
    /// Accept a user's request.
    Accept {
        #[arg(long)]
        from: u64,
    },
    /// Decline a user's request.
    Decline {
        #[arg(long)]
        from: u64,
    },
    /// Print the requests waiting for you, one per line, newest first.
    Requests,
    /// End a friendship.
    Remove {
        #[arg(long)]
        user: u64,
    },
    /// Hide a friend ("private mode"): out of your contact list and
    /// conversation list on every device; found by exact search only.
    Hide {
        #[arg(long)]
        user: u64,
    },
    /// Show a hidden friend again.
    Unhide {
        #[arg(long)]
        user: u64,
    },
    /// Find friends by the start of their remark or display name, or by
    /// user id; hidden friends only by an exact remark, display name or id.
    Search {
        #[arg(long)]
        q: String,
    },
}

#[derive(Subcommand)]
enum PrivacyCommand {
    /// Set one setting: `who-may-message friends|anyone`,
    /// `who-may-add-me friends|anyone|invite`,
    /// `phone-visibility everyone|friends|nobody`, or
    /// `invisible off|strangers|everyone`.
    Set { key: String, value: String },
    /// Print your settings.
    Show,
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Create a group owned by you; prints it (with `group_id`, and who was `added` and who `invited`).
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated user ids.
        #[arg(long, value_delimiter = ',')]
        members: Vec<u64>,
    },
    /// Add users; prints who was added, who waits for approval, and who was invited.
    Add {
        #[arg(long)]
        group: u64,
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<u64>,
    },
    /// Print the group.
    Show {
        #[arg(long)]
        group: u64,
    },
    /// Print the members, one per line (all pages), optionally matching a search.
    Members {
        #[arg(long)]
        group: u64,
        #[arg(long, default_value = "")]
        search: String,
    },
    /// Remove a member (admins and the owner).
    Remove {
        #[arg(long)]
        group: u64,
        #[arg(long)]
        user: u64,
    },
    /// Leave the group.
    Leave {
        #[arg(long)]
        group: u64,
    },
    /// Print the invitations into groups waiting for you, one per line, newest first.
    Invitations,
    /// Accept your invitation into a group; prints whether you joined (false: waiting for approval).
    Accept {
        #[arg(long)]
        group: u64,
    },
    /// Decline your invitation into a group.
    Decline {
        #[arg(long)]
        group: u64,
    },
}

/// What a failed command reports: a stable code and a human message.
#[derive(Debug)]
struct Failure {
    code: String,
    message: String,
    /// The same call may work later: the server is down, restarting or
    /// asked us to slow down.
    retryable: bool,
}

impl Failure {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Failure {
            code: code.to_owned(),
            message: message.into(),
            retryable: false,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        let retryable = match &err {
            ClientError::Api { status, .. } => *status == 429 || *status >= 500,
            ClientError::Server { retry_after_ms, .. } => retry_after_ms.is_some(),
            ClientError::Closed { .. }
            | ClientError::Timeout(_)
            | ClientError::Http(_)
            | ClientError::WebSocket(_) => true,
            ClientError::Url(_) | ClientError::Decode(_) | ClientError::Io(_) => false,
        };
        let code = match &err {
            ClientError::Api { code, message, .. } | ClientError::Server { code, message, .. } => {
                return Failure {
                    retryable,
                    ..Failure::new(code, message.clone())
                };
            }
            ClientError::Closed { .. } => "connection_closed",
            ClientError::Timeout(_) => "timeout",
            ClientError::Http(_) | ClientError::WebSocket(_) => "transport",
            ClientError::Url(_) => "invalid_url",
            ClientError::Decode(_) => "unexpected_reply",
            ClientError::Io(_) => "io",
        };
        Failure {
            retryable,
            ..Failure::new(code, err.to_string())
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Failure::new("io", err.to_string())
    }
}

type CliResult<T = ()> = Result<T, Failure>;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let app = App {
        http: HttpClient::new(cli.server.clone()),
        ws: cli.ws.unwrap_or(cli.server),
        profile: Profile { dir: cli.profile },
    };
    match app.run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!(
                "{}",
                json!({ "error": failure.code, "message": failure.message })
            );
            ExitCode::FAILURE
        }
    }
}

struct App {
    http: HttpClient,
    /// Where WebSocket sessions go: `--ws`, or the server.
    ws: String,
    profile: Profile,
}

impl App {
    async fn run(&self, command: Command) -> CliResult {
        match command {
            Command::Register {
                phone,
                password,
                name,
            } => {
                let account = self.http.register(&phone, &password, &name).await?;
                print_line(&json!(account))
            }
            Command::Login { phone, password } => {
                let tokens = self
                    .http
                    .login_device(&phone, &password, Some("superapp-cli"))
                    .await?;
                self.profile.save_session(&tokens)?;
                print_line(&json!({
                    "user_id": tokens.user_id.to_string(),
                    "session_id": tokens.session_id.to_string(),
                }))
            }
            Command::Logout => self.logout().await,
            Command::Send { to, text } => self.send(&to, Content::Text(text), json!({})).await,
            Command::SendLocation {
                to,
                lat,
                lon,
                name,
                address,
            } => {
                let place = Location {
                    latitude: lat,
                    longitude: lon,
                    name,
                    address,
                };
                self.send(&to, Content::Location(place), json!({})).await
            }
            Command::SendImage {
                to,
                path,
                keep_exif,
            } => {
                let upload = Upload {
                    kind: "image",
                    keep_exif,
                    ..Upload::default()
                };
                let media = self.upload(&path, &upload).await?;
                let body = Content::Image(Image {
                    media_id: media.media_id.clone(),
                    ..Image::default()
                });
                self.send(&to, body, json!({ "media": media })).await
            }
            Command::SendFile { to, path, name } => {
                let name = match name {
                    Some(name) => name,
                    None => path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .ok_or_else(|| Failure::new("invalid_arguments", "--path names no file"))?,
                };
                let upload = Upload {
                    kind: "file",
                    name: Some(&name),
                    ..Upload::default()
                };
                let media = self.upload(&path, &upload).await?;
                let body = Content::File(File {
                    media_id: media.media_id.clone(),
                    name,
                    ..File::default()
                });
                self.send(&to, body, json!({ "media": media })).await
            }
            Command::Download {
                media,
                conversation,
                seq,
                user,
                thumbnail,
                out,
            } => {
                let tokens = self.fresh_tokens().await?;
                let request = LinkRequest {
                    variant: thumbnail.then(|| "thumbnail".to_owned()),
                    conversation_id: conversation,
                    seq,
                    user_id: user,
                };
                let link = self
                    .http
                    .media_link(&tokens.access_token, &media, &request)
                    .await?;
                let bytes = self.http.download(&link.url, &out).await?;
                print_line(&json!({
                    "media_id": media,
                    "bytes": bytes,
                    "path": out.display().to_string(),
                }))
            }
            Command::Group { command } => self.group(command).await,
            Command::Call { command } => self.call(command).await,
            Command::Wallet { command } => self.wallet(command).await,
            Command::Transfer {
                command: Some(command),
                ..
            } => self.transfer(command).await,
            Command::Transfer {
                command: None,
                to,
                amount,
                memo,
                pin,
                json,
            } => {
                let (Some(to), Some(amount)) = (to, amount) else {
                    return Err(Failure::new(
                        "invalid_arguments",
                        "transfer needs --to and --amount",
                    ));
                };
                self.send_transfer(wallet::NewTransfer {
                    to,
                    amount,
                    memo,
                    pin,
                    json,
                })
                .await
            }
            Command::Redpacket { command } => self.red_packet(command).await,
            Command::Listen {
                json,
                count,
                timeout,
            } => {
                let deadline = match timeout {
                    Some(secs) => Some(Instant::now() + parse_seconds(secs)?),
                    None => None,
                };
                self.listen(json, count, deadline).await
            }
            Command::Conversations { json } => self.conversations(json).await,
            Command::Me => {
                let tokens = self.fresh_tokens().await?;
                let account = self.http.me(&tokens.access_token).await?;
                print_line(&json!(account))
            }
            Command::Friend { command } => self.friend(command).await,
            Command::Friends { json } => self.friends(json).await,
            Command::Block { user } => {
                let tokens = self.fresh_tokens().await?;
                self.http.block(&tokens.access_token, user).await?;
                print_line(&json!({ "blocked": user.to_string() }))
            }
            Command::Unblock { user } => {
                let tokens = self.fresh_tokens().await?;
                self.http.unblock(&tokens.access_token, user).await?;
                print_line(&json!({ "unblocked": user.to_string() }))
            }
            Command::Privacy { command } => self.privacy(command).await,
            Command::Profile { command } => self.profile(command).await,
            Command::Lookup { id, handle, phone } => {
                let tokens = self.fresh_tokens().await?;
                let token = tokens.access_token.as_str();
                let found = match (id, handle, phone) {
                    (Some(id), _, _) => self.http.user_profile(token, id).await?,
                    (_, Some(handle), _) => self.http.find_by_handle(token, &handle).await?,
                    (_, _, Some(phone)) => self.http.find_by_phone(token, &phone).await?,
                    (None, None, None) => {
                        return Err(Failure::new(
                            "invalid_arguments",
                            "give --id, --handle or --phone",
                        ));
                    }
                };
                print_line(&json!(found))
            }
            Command::Match { phones } => self.match_contacts(&phones).await,
            Command::Nearby {
                command: Some(NearbyCommand::Clear),
                ..
            } => {
                let tokens = self.fresh_tokens().await?;
                self.http.clear_location(&tokens.access_token).await?;
                print_line(&json!({ "cleared": true }))
            }
            Command::Nearby {
                command: None,
                lat,
                lon,
                radius,
                limit,
            } => {
                let (Some(lat), Some(lon)) = (lat, lon) else {
                    return Err(Failure::new(
                        "invalid_arguments",
                        "nearby needs --lat and --lon",
                    ));
                };
                self.nearby(lat, lon, radius, limit).await
            }
            Command::Password { current, new } => {
                let tokens = self.fresh_tokens().await?;
                let renewed = self
                    .http
                    .change_password(&tokens.access_token, &current, &new)
                    .await?;
                self.profile.save_session(&renewed)?;
                print_line(&json!({
                    "password_changed": true,
                    "session_id": renewed.session_id.to_string(),
                }))
            }
            Command::Device { command } => self.device(command).await,
            Command::Account { command } => self.account(command).await,
            Command::Names { users } => {
                let tokens = self.fresh_tokens().await?;
                let names = self.http.user_names(&tokens.access_token, &users).await?;
                for name in names.users {
                    print_line(&json!(name))?;
                }
                Ok(())
            }
        }
    }

    async fn device(&self, command: DeviceCommand) -> CliResult {
        let tokens = self.fresh_tokens().await?;
        let token = tokens.access_token.as_str();
        match command {
            DeviceCommand::List => {
                for session in self.http.sessions(token).await?.sessions {
                    print_line(&json!(session))?;
                }
                Ok(())
            }
            DeviceCommand::Revoke { session } => {
                self.http.revoke_session(token, session).await?;
                if session == tokens.session_id {
                    self.profile.clear_session()?;
                }
                print_line(&json!({ "revoked": session.to_string() }))
            }
        }
    }

    async fn account(&self, command: AccountCommand) -> CliResult {
        match command {
            AccountCommand::Delete { password } => {
                let tokens = self.fresh_tokens().await?;
                let asked = self
                    .http
                    .delete_account(&tokens.access_token, &password)
                    .await?;
                self.profile.clear_session()?;
                print_line(&json!({
                    "deletion_requested": true,
                    "requested_at_ms": asked.requested_at_ms,
                    "due_at_ms": asked.due_at_ms,
                }))
            }
            AccountCommand::Restore { phone, password } => {
                let tokens = self
                    .http
                    .restore_account(&phone, &password, Some("superapp-cli"))
                    .await?;
                self.profile.save_session(&tokens)?;
                print_line(&json!({
                    "restored": true,
                    "user_id": tokens.user_id.to_string(),
                    "session_id": tokens.session_id.to_string(),
                }))
            }
        }
    }

    async fn profile(&self, command: ProfileCommand) -> CliResult {
        let tokens = self.fresh_tokens().await?;
        let token = tokens.access_token.as_str();
        let profile = match command {
            ProfileCommand::Show => self.http.my_profile(token).await?,
            ProfileCommand::Set {
                name,
                avatar,
                signature,
                region,
                gender,
                handle,
            } => {
                let update = ProfileUpdate {
                    display_name: name,
                    avatar_url: avatar,
                    signature,
                    region,
                    gender,
                    handle,
                };
                self.http.update_profile(token, &update).await?
            }
        };
        print_line(&json!(profile))
    }

    /// Shares the position, then prints the people near it.
    async fn nearby(
        &self,
        lat: f64,
        lon: f64,
        radius: Option<u32>,
        limit: Option<u32>,
    ) -> CliResult {
        let tokens = self.fresh_tokens().await?;
        let token = tokens.access_token.as_str();
        self.http.share_location(token, lat, lon).await?;
        for person in self.http.nearby(token, radius, limit).await?.people {
            print_line(&json!(person))?;
        }
        Ok(())
    }

    /// Hashes the numbers with the server's salt, matches them, and prints
    /// each user found with the number that found them.
    async fn match_contacts(&self, phones: &[String]) -> CliResult {
        let tokens = self.fresh_tokens().await?;
        let token = tokens.access_token.as_str();
        let salt = self.http.contact_salt(token).await?;
        let mut by_hash = std::collections::HashMap::new();
        for phone in phones {
            let e164: String = phone
                .chars()
                .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
                .collect();
            let hash = contact_hash(&salt.salt, &e164)
                .ok_or_else(|| Failure::new("unexpected_reply", "the server's salt is not hex"))?;
            by_hash.insert(hash, e164);
        }
        let hashes: Vec<String> = by_hash.keys().cloned().collect();
        for chunk in hashes.chunks(salt.hashes_per_request.max(1) as usize) {
            for found in self.http.match_contacts(token, chunk).await?.matches {
                let phone = by_hash.get(&found.hash).cloned().unwrap_or_default();
                print_line(&json!({ "phone": phone, "user": found.user }))?;
            }
        }
        Ok(())
    }

    async fn friend(&self, command: FriendCommand) -> CliResult {
        let tokens = self.fresh_tokens().await?;
        let token = tokens.access_token.as_str();
        match command {
            FriendCommand::Request { to, greeting } => {
                let sent = self.http.friend_request(token, to, &greeting).await?;
                print_line(&json!({ "to": to.to_string(), "status": sent.status }))
            }
            FriendCommand::Accept { from } => {
                let version = self.http.accept_friend(token, from).await?;
                print_line(&json!({ "friend": from.to_string(), "version": version.version }))
            }
            FriendCommand::Decline { from } => {
                self.http.decline_friend(token, from).await?;
                print_line(&json!({ "declined": from.to_string() }))
            }
            FriendCommand::Requests => {
                for request in self.http.friend_requests(token).await?.requests {
                    print_line(&json!(request))?;
                }
                Ok(())
            }
            FriendCommand::Remove { user } => {
                let version = self.http.remove_friend(token, user).await?;
                print_line(&json!({ "removed": user.to_string(), "version": version.version }))
            }
            FriendCommand::Hide { user } | FriendCommand::Unhide { user } => {
                let hidden = matches!(command, FriendCommand::Hide { .. });
                let version = self.http.hide_friend(token, user, hidden).await?;
                let done = if hidden { "hidden" } else { "unhidden" };
                print_line(&json!({ done: user.to_string(), "version": version.version }))
            }
            FriendCommand::Search { q } => {
                for found in self.http.search_contacts(token, &q).await?.contacts {
                    print_line(&json!(found))?;
                }
                Ok(())
            }
        }
    }

    /// The whole contact list, page after page.
    async fn friends(&self, as_json: bool) -> CliResult {
        let tokens = self.fresh_tokens().await?;
        let mut since = 0;
        loop {
            let page = self
                .http
                .contacts(&tokens.access_token, since, 1_000)
                .await?;
            for contact in &page.changes {
                if as_json {
                    print_line(&json!(contact))?;
                } else {
                    let name = if contact.remark.is_empty() {
                        "-"
                    } else {
                        &contact.remark
                    };
                    println!("{}  {name}", contact.user_id);
                }
            }
            match page.changes.last() {
                Some(last) if page.more => since = last.version,
                _ => return Ok(()),
            }
        }
    }

    async fn privacy(&self, command: PrivacyCommand) -> CliResult {
        let tokens = self.fresh_tokens().await?;
        let token = tokens.access_token.as_str();
        let settings = match command {
            PrivacyCommand::Show => return print_line(&json!(self.http.privacy(token).await?)),
            PrivacyCommand::Set { key, value } => match key.as_str() {
                "who-may-message" => PrivacySettings {
                    who_may_message: Some(value),
                    ..PrivacySettings::default()
                },
                "who-may-add-me" => PrivacySettings {
                    who_may_add_me: Some(value),
                    ..PrivacySettings::default()
                },
                "phone-visibility" => PrivacySettings {
                    phone_visibility: Some(value),
                    ..PrivacySettings::default()
                },
                "invisible" => PrivacySettings {
                    invisible: Some(value),
                    ..PrivacySettings::default()
                },
                _ => {
                    return Err(Failure::new(
                        "invalid_arguments",
                        format!(
                            "unknown setting {key:?}; settings: who-may-message, \
                             who-may-add-me, phone-visibility, invisible"
                        ),
                    ));
                }
            },
        };
        print_line(&json!(self.http.set_privacy(token, &settings).await?))
    }

    /// The saved session, refreshed first if the access token is about to
    /// expire. The new pair is saved at once, because the old refresh token
    /// is dead from now on.
    async fn fresh_tokens(&self) -> CliResult<Tokens> {
        let tokens = self.profile.load_session()?;
        if !access_expiring(&tokens) {
            return Ok(tokens);
        }
        let tokens = self.http.refresh(&tokens.refresh_token).await?;
        self.profile.save_session(&tokens)?;
        Ok(tokens)
    }

    async fn connect(&self) -> CliResult<Connection> {
        let tokens = self.fresh_tokens().await?;
        Ok(Connection::connect(&self.ws, &tokens.access_token).await?)
    }

    async fn logout(&self) -> CliResult {
        let tokens = self.profile.load_session()?;
        let ended = if access_expiring(&tokens) {
            match self.http.refresh(&tokens.refresh_token).await {
                Ok(tokens) => {
                    self.profile.save_session(&tokens)?;
                    self.http.logout(&tokens.access_token).await
                }
                Err(err) => Err(err),
            }
        } else {
            self.http.logout(&tokens.access_token).await
        };
        match ended {
            // 401: the session is already dead on the server (revoked, or its
            // refresh token expired), which is what was asked.
            Ok(()) | Err(ClientError::Api { status: 401, .. }) => {
                self.profile.clear_session()?;
                print_line(&json!({ "logged_out": true }))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Sends one message and prints its ack, merged into `also`.
    async fn send(
        &self,
        to: &Recipient,
        content: Content,
        mut also: serde_json::Value,
    ) -> CliResult {
        let (to_user, conversation_id) = match (to.to, to.conversation.clone(), to.group) {
            (_, Some(conversation), _) => (0, conversation),
            (_, None, Some(group)) => (0, ConversationId::Group(GroupId(group)).to_string()),
            (Some(to), None, None) => (to, String::new()),
            (None, None, None) => {
                return Err(Failure::new(
                    "invalid_arguments",
                    "give --to, --group or --conversation",
                ));
            }
        };
        let conn = self.connect().await?;
        let ack = conn
            .send(SendMessage {
                client_msg_id: new_client_msg_id(),
                conversation_id,
                to_user,
                body: Some(MessageBody {
                    content: Some(content),
                    ..MessageBody::default()
                }),
                ..SendMessage::default()
            })
            .await;
        conn.close().await;
        let ack = ack?;
        let fields = json!({
            "conversation_id": ack.conversation_id,
            "seq": ack.seq,
            "message_id": ack.message_id.to_string(),
            "server_time_ms": ack.server_time_ms,
            "duplicate": ack.duplicate,
        });
        if let (Some(also), serde_json::Value::Object(fields)) = (also.as_object_mut(), fields) {
            also.extend(fields);
        }
        print_line(&also)
    }

    /// Uploads a file (in chunks that resume after a cut connection).
    async fn upload(&self, path: &Path, upload: &Upload<'_>) -> CliResult<MediaFacts> {
        let tokens = self.fresh_tokens().await?;
        Ok(self
            .http
            .upload_file(&tokens.access_token, path, upload)
            .await?)
    }

    async fn group(&self, command: GroupCommand) -> CliResult {
        let tokens = self.fresh_tokens().await?;
        let token = tokens.access_token.as_str();
        // The body of a 2xx answer; anything else is the server's error.
        let api = |method: &'static str, path: String| async move {
            match self
                .http
                .request_json(method, &path, Some(token), None)
                .await?
            {
                (status, body) if status < 300 => Ok(body),
                (status, body) => Err(Failure::new(
                    body["code"].as_str().unwrap_or("http_error"),
                    format!("HTTP {status}: {}", body["message"].as_str().unwrap_or("")),
                )),
            }
        };
        match command {
            GroupCommand::Create { name, members } => {
                let group = self.http.create_group(token, &name, &members).await?;
                print_line(&json!(group))
            }
            GroupCommand::Add { group, members } => {
                let join = self.http.add_group_members(token, group, &members).await?;
                print_line(&json!(join))
            }
            GroupCommand::Show { group } => {
                print_line(&json!(self.http.group(token, group).await?))
            }
            GroupCommand::Members { group, search } => {
                let mut cursor = String::new();
                loop {
                    let path = format!(
                        "/v1/groups/{group}/members?limit=500&cursor={cursor}&q={}",
                        superapp_client::ws::escape_query(&search)
                    );
                    let page = api("GET", path).await?;
                    for member in page["members"].as_array().into_iter().flatten() {
                        print_line(member)?;
                    }
                    cursor = page["next_cursor"].as_str().unwrap_or("").to_string();
                    if cursor.is_empty() {
                        return Ok(());
                    }
                }
            }
            GroupCommand::Remove { group, user } => {
                api("DELETE", format!("/v1/groups/{group}/members/{user}")).await?;
                print_line(&json!({ "removed": user.to_string() }))
            }
            GroupCommand::Leave { group } => {
                api(
                    "DELETE",
                    format!("/v1/groups/{group}/members/{}", tokens.user_id),
                )
                .await?;
                print_line(&json!({ "left": group.to_string() }))
            }
            GroupCommand::Invitations => {
                let waiting = self.http.group_invitations(token).await?;
                for invitation in &waiting.invitations {
                    print_line(&json!(invitation))?;
                }
                Ok(())
            }
            GroupCommand::Accept { group } => {
                let joined = self.http.accept_group_invitation(token, group).await?;
                print_line(&json!(joined))
            }
            GroupCommand::Decline { group } => {
                self.http.decline_group_invitation(token, group).await?;
                print_line(&json!({ "declined": group.to_string() }))
            }
        }
    }

    async fn conversations(&self, as_json: bool) -> CliResult {
        let conn = self.connect().await?;
        let conversations = all_conversations(&conn).await;
        conn.close().await;
        let conversations = conversations?;
        if as_json {
            let list: Vec<_> = conversations
                .iter()
                .map(|c| {
                    json!({
                        "conversation_id": c.conversation_id,
                        "peer": c.peer.to_string(),
                        "last_seq": c.last_seq,
                        "read_seq": c.read_seq,
                        "unread": c.unread,
                        "last_activity_ms": c.last_activity_ms,
                        "peer_read_seq": c.peer_read_seq,
                        "group_id": c.group_id.to_string(),
                        "name": c.name,
                        "member_count": c.member_count,
                        "mentioned": c.mentioned,
                    })
                })
                .collect();
            return print_line(&json!({ "conversations": list }));
        }
        let mut out = std::io::stdout().lock();
        for c in &conversations {
            writeln!(
                out,
                "{}  peer {}  last #{}  unread {}",
                c.conversation_id, c.peer, c.last_seq, c.unread
            )?;
        }
        Ok(())
    }

    /// Connects, catches up, follows; reconnects when the server asks for it
    /// (4008 slow consumer, 1012 restart) or the network drops, until `count`
    /// messages were printed or the deadline passes.
    async fn listen(
        &self,
        as_json: bool,
        count: Option<u64>,
        deadline: Option<Instant>,
    ) -> CliResult {
        let me = self.fresh_tokens().await?.user_id;
        let mut listener = Listener {
            me,
            as_json,
            count,
            printed: 0,
            seen: self.profile.load_sync(me)?,
            profile: &self.profile,
        };
        let mut backoff = FIRST_BACKOFF;
        let mut first = true;
        while !listener.done() {
            if !first && !sleep_within(deadline, backoff).await {
                return Ok(());
            }
            first = false;
            let conn = match within(deadline, self.connect()).await {
                None => return Ok(()),
                Some(Ok(conn)) => conn,
                Some(Err(failure)) if failure.retryable => {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Some(Err(failure)) => return Err(failure),
            };
            backoff = FIRST_BACKOFF;
            let step = listener.follow(&conn, deadline).await;
            conn.close().await;
            match step? {
                Step::Finish => return Ok(()),
                Step::Reconnect => {}
            }
        }
        Ok(())
    }
}

enum Step {
    Finish,
    Reconnect,
}

/// The state of one `listen` run across reconnects.
struct Listener<'a> {
    me: u64,
    as_json: bool,
    count: Option<u64>,
    printed: u64,
    /// Exactly the messages handled so far, saved after each one. Kept apart
    /// from the per-connection working state, which may run ahead of it when
    /// `count` stops the run in the middle of a pulled batch.
    seen: SyncState,
    profile: &'a Profile,
}

impl Listener<'_> {
    fn done(&self) -> bool {
        self.count.is_some_and(|count| self.printed >= count)
    }

    async fn follow(&mut self, conn: &Connection, deadline: Option<Instant>) -> CliResult<Step> {
        let mut working = self.seen.clone();
        match within(deadline, catch_up(conn, &mut working)).await {
            None => return Ok(Step::Finish),
            Some(Err(err)) => return after_error(conn, err, deadline).await,
            Some(Ok(messages)) => {
                if self.deliver_all(&messages)? {
                    return Ok(Step::Finish);
                }
            }
        }
        // The session has answered, so it is registered: what is sent from
        // now on arrives live. Said on stderr, apart from the messages.
        eprintln!("Listening for new messages.");
        let mut last_ping = Instant::now();
        loop {
            let mut wait = PING_EVERY.saturating_sub(last_ping.elapsed());
            if let Some(deadline) = deadline {
                wait = wait.min(deadline.saturating_duration_since(Instant::now()));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Step::Finish);
            }
            let Some(event) = conn.next_event(wait).await else {
                if conn.is_closed() {
                    return reconnect_or_fail(conn.close_frame());
                }
                if last_ping.elapsed() >= PING_EVERY {
                    last_ping = Instant::now();
                    match within(deadline, conn.ping()).await {
                        None => return Ok(Step::Finish),
                        Some(Err(err)) => return after_error(conn, err, deadline).await,
                        Some(Ok(_)) => {}
                    }
                }
                continue;
            };
            let pulled = match event.kind {
                Some(EventKind::Message(message)) => match accept_live(&mut working, &message) {
                    Gap::Accept => Some(Ok(vec![message])),
                    Gap::Duplicate => continue,
                    Gap::Missing { .. } => {
                        let conversation_id = message.conversation_id;
                        within(deadline, pull_after(conn, &mut working, &conversation_id)).await
                    }
                },
                Some(EventKind::ResyncRequired(_)) => {
                    within(deadline, catch_up(conn, &mut working)).await
                }
                // Joining a group brings a conversation this run has not listed.
                Some(EventKind::Group(g)) if g.users.contains(&self.me) => {
                    within(deadline, catch_up(conn, &mut working)).await
                }
                Some(
                    EventKind::Group(_)
                    | EventKind::ReadReceipt(_)
                    | EventKind::Contact(_)
                    | EventKind::GroupInvitation(_)
                    | EventKind::Call(_)
                    | EventKind::CallSignal(_)
                    | EventKind::Wallet(_),
                )
                | None => continue,
            };
            // A pull cut short by the deadline may have moved `working` past
            // messages not delivered; only `seen` is saved, so none are lost.
            match pulled {
                None => return Ok(Step::Finish),
                Some(Ok(messages)) => {
                    if self.deliver_all(&messages)? {
                        return Ok(Step::Finish);
                    }
                }
                Some(Err(err)) => return after_error(conn, err, deadline).await,
            }
        }
    }

    /// Handles messages in order; true once `count` is reached.
    fn deliver_all(&mut self, messages: &[Message]) -> CliResult<bool> {
        for message in messages {
            if self.deliver(message)? {
                return Ok(true);
            }
        }
        Ok(self.done())
    }

    /// Records one message as seen and prints it unless this user sent it.
    fn deliver(&mut self, message: &Message) -> CliResult<bool> {
        if message.sender != self.me {
            // A kind other than text prints as its fallback ("[Image]").
            let text = match message.body.as_ref() {
                Some(body) => match &body.content {
                    Some(Content::Text(text)) => text.as_str(),
                    _ => body.fallback.as_str(),
                },
                None => "",
            };
            if self.as_json {
                print_line(&json!({
                    "conversation_id": message.conversation_id,
                    "seq": message.seq,
                    "from": message.sender.to_string(),
                    "text": text,
                    "message_id": message.message_id.to_string(),
                    "server_time_ms": message.server_time_ms,
                }))?;
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "[{} #{}] {}: {}",
                    message.conversation_id, message.seq, message.sender, text
                )?;
                out.flush()?;
            }
            self.printed += 1;
        }
        self.seen.advance(&message.conversation_id, message.seq);
        self.profile.save_sync(self.me, &self.seen)?;
        Ok(self.done())
    }
}

/// A request failed mid-listen. A closed socket is judged by its close
/// code; a rate limit is waited out and followed by a fresh connection;
/// anything else is reported.
async fn after_error(
    conn: &Connection,
    err: ClientError,
    deadline: Option<Instant>,
) -> CliResult<Step> {
    match err {
        ClientError::Closed { .. } | ClientError::Timeout(_) => {
            let frame = conn.wait_closed(Duration::from_millis(500)).await;
            reconnect_or_fail(frame)
        }
        ClientError::Server {
            retry_after_ms: Some(wait),
            ..
        } => Ok(
            if sleep_within(deadline, Duration::from_millis(wait)).await {
                Step::Reconnect
            } else {
                Step::Finish
            },
        ),
        other => Err(other.into()),
    }
}

/// Codes that mean "come back" reconnect; codes that mean the session or
/// this client is at fault end the run.
fn reconnect_or_fail(frame: Option<(u16, String)>) -> CliResult<Step> {
    match frame {
        Some((4001, reason)) => Err(Failure::new("session_revoked", reason)),
        Some((1008, reason)) => Err(Failure::new("rate_limited", reason)),
        Some((code @ (1003 | 1007 | 1009), reason)) => Err(Failure::new(
            "protocol_error",
            format!("server closed with {code}: {reason}"),
        )),
        // 4008, 1012, 4000, 1000, 1001, or a dropped network.
        _ => Ok(Step::Reconnect),
    }
}

/// Runs `fut` unless the deadline passes first (`None`).
async fn within<T>(deadline: Option<Instant>, fut: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// Sleeps for `duration`; false if the deadline came first.
async fn sleep_within(deadline: Option<Instant>, duration: Duration) -> bool {
    let wake = Instant::now() + duration;
    match deadline {
        Some(deadline) if deadline <= wake => {
            tokio::time::sleep_until(deadline).await;
            false
        }
        _ => {
            tokio::time::sleep_until(wake).await;
            true
        }
    }
}

fn parse_seconds(secs: f64) -> CliResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        Failure::new(
            "invalid_arguments",
            format!("--timeout {secs} is not a duration"),
        )
    })
}

fn print_line(value: &serde_json::Value) -> CliResult {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    // A script reading a pipe must see each line as soon as it is printed.
    out.flush()?;
    Ok(())
}

fn access_expiring(tokens: &Tokens) -> bool {
    tokens.access_expires_at_ms - now_ms() <= REFRESH_MARGIN_MS
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The on-disk sync state, tagged with its user so that logging in as
/// someone else in the same profile starts from nothing.
#[serde_as]
#[derive(Serialize, Deserialize)]
struct SyncFile {
    #[serde_as(as = "U64AsString")]
    user_id: u64,
    #[serde(flatten)]
    state: SyncState,
}

struct Profile {
    dir: PathBuf,
}

impl Profile {
    fn session_path(&self) -> PathBuf {
        self.dir.join("session.json")
    }

    fn sync_path(&self) -> PathBuf {
        self.dir.join("sync.json")
    }

    fn load_session(&self) -> CliResult<Tokens> {
        let bytes = match fs::read(self.session_path()) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(Failure::new(
                    "not_logged_in",
                    "no saved session: run `login` first",
                ));
            }
            Err(err) => return Err(err.into()),
        };
        serde_json::from_slice(&bytes)
            .map_err(|err| Failure::new("corrupt_profile", format!("session.json: {err}")))
    }

    fn save_session(&self, tokens: &Tokens) -> CliResult {
        write_private(&self.session_path(), &json_bytes(tokens)?)
    }

    fn clear_session(&self) -> CliResult {
        match fs::remove_file(self.session_path()) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.into()),
            _ => Ok(()),
        }
    }

    fn load_sync(&self, user_id: u64) -> CliResult<SyncState> {
        let bytes = match fs::read(self.sync_path()) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(SyncState::new()),
            Err(err) => return Err(err.into()),
        };
        let file: SyncFile = serde_json::from_slice(&bytes)
            .map_err(|err| Failure::new("corrupt_profile", format!("sync.json: {err}")))?;
        Ok(if file.user_id == user_id {
            file.state
        } else {
            SyncState::new()
        })
    }

    fn save_sync(&self, user_id: u64, state: &SyncState) -> CliResult {
        let file = SyncFile {
            user_id,
            state: state.clone(),
        };
        write_private(&self.sync_path(), &json_bytes(&file)?)
    }
}

fn json_bytes(value: &impl Serialize) -> CliResult<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|err| Failure::new("io", err.to_string()))
}

/// Writes owner-only (0600) through a temporary file and a rename, so a crash
/// never leaves half a token pair and the secret is never briefly readable.
fn write_private(path: &Path, bytes: &[u8]) -> CliResult {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn a_session_is_saved_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("superapp-cli-test-{}", new_client_msg_id()));
        let profile = Profile { dir: dir.clone() };
        let tokens = Tokens {
            user_id: 1,
            session_id: 2,
            access_token: "a".into(),
            access_expires_at_ms: 3,
            refresh_token: "r".into(),
            refresh_expires_at_ms: 4,
        };
        profile.save_session(&tokens).unwrap();
        let mode = fs::metadata(profile.session_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(profile.load_session().unwrap(), tokens);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sync_state_of_another_user_is_not_reused() {
        let dir = std::env::temp_dir().join(format!("superapp-cli-test-{}", new_client_msg_id()));
        let profile = Profile { dir: dir.clone() };
        let mut state = SyncState::new();
        state.advance("c", 4);
        profile.save_sync(7, &state).unwrap();
        assert_eq!(profile.load_sync(7).unwrap(), state);
        assert_eq!(profile.load_sync(8).unwrap(), SyncState::new());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn revocation_ends_a_listen_but_a_slow_consumer_close_reconnects() {
        assert!(reconnect_or_fail(Some((4001, String::new()))).is_err());
        assert!(matches!(
            reconnect_or_fail(Some((4008, String::new()))),
            Ok(Step::Reconnect)
        ));
        assert!(matches!(
            reconnect_or_fail(Some((1012, String::new()))),
            Ok(Step::Reconnect)
        ));
        assert!(matches!(reconnect_or_fail(None), Ok(Step::Reconnect)));
    }
}
