//! Exit codes are an interface: Postgres retries `archive_command` on any
//! non-zero status, `restore_command`'s caller treats "not found" as
//! ordinary, and scripts branch on the rest. Documented in
//! docs/exit-codes.md; keep the two in step. All codes are below 126
//! except `StopRecovery`: Postgres treats a restore_command status above
//! 125 as fatal to recovery (xlogarchive.c: RestoreArchivedFile,
//! wait_result_is_any_signal) and every lower one as "not archived", which
//! ends recovery early. So `wal-fetch` exits 3 only for "not in a healthy
//! repository" and `StopRecovery` for every other failure.

use crate::capture::backup::BackupError;
use crate::capture::snapshot::{ProviderError, SnapshotError};
use crate::capture::wal_fetch::FetchError;
use crate::capture::wal_push::PushError;
use crate::ops::check::CheckError;
use crate::ops::expire::ExpireRunError;
use crate::ops::maintain::MaintainError;
use crate::plan::expire::ExpireError;
use crate::plan::{PlanError, TimeError};
use crate::recover::fork::{ForkError, NewRepoError};
use crate::recover::install::SelectError;
use crate::recover::live::ServerError;
use crate::recover::pgdata::PgdataError;
use crate::recover::promote::PromoteError;
use crate::recover::run::RunError;
use crate::recover::status::StatusError;
use crate::recover::verify_repo::VerifyError;
use crate::recover::verify_restore::RestoreCheckError;
use crate::recover::RecoverError;
use crate::repo::crypt::CryptError;
use crate::repo::init::InitError;
use crate::repo::store::StoreError;
use crate::repo::RepoError;
use crate::server::install::{BinError, InstallError};
use crate::server::user::UserError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Internal = 1,
    Usage = 2,
    NotFound = 3,
    Unreachable = 4,
    Incompatible = 5,
    Storage = 6,
    Recovery = 7,
    Postgres = 8,
    Conflict = 9,
    /// `verify`: the repository (or its scratch restore) has problems;
    /// each is named.
    Problems = 10,
    /// `check`: a check warns (the report names it).
    CheckWarning = 11,
    /// `check`: a check is critical.
    CheckCritical = 12,
    /// `wal-fetch` only: anything but "not archived" (see above).
    StopRecovery = 200,
}

/// An error on its way out of the CLI, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(code: Code, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code,
            error: error.into(),
        }
    }

    pub fn usage(msg: impl std::fmt::Display) -> Failure {
        Failure::new(Code::Usage, anyhow::anyhow!("{msg}"))
    }

    /// For restore_command: every failure but "not archived" stops
    /// recovery rather than ending it.
    pub fn stop_recovery(self) -> Failure {
        match self.code {
            Code::NotFound => self,
            Code::Ok
            | Code::Internal
            | Code::Usage
            | Code::Unreachable
            | Code::Incompatible
            | Code::Storage
            | Code::Recovery
            | Code::Postgres
            | Code::Conflict
            | Code::Problems
            | Code::CheckWarning
            | Code::CheckCritical
            | Code::StopRecovery => Failure {
                code: Code::StopRecovery,
                error: self.error,
            },
        }
    }

    pub fn context(self, ctx: impl std::fmt::Display + Send + Sync + 'static) -> Failure {
        Failure {
            code: self.code,
            error: self.error.context(ctx),
        }
    }
}

fn repo_code(e: &RepoError) -> Code {
    match e {
        RepoError::NotInitialized(_) | RepoError::UnsupportedScheme(_) => Code::Usage,
        RepoError::Store(s) => store_code(s),
        RepoError::Meta { .. } | RepoError::Codec { .. } | RepoError::Inconsistent { .. } => {
            Code::Storage
        }
    }
}

fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::BadKey(_) => Code::Usage,
        StoreError::Crypt(c) => crypt_code(c),
        StoreError::NotFound(_)
        | StoreError::AlreadyExists(_)
        | StoreError::Remote { .. }
        | StoreError::Io { .. } => Code::Storage,
    }
}

fn crypt_code(e: &CryptError) -> Code {
    match e {
        CryptError::ReadKey { .. }
        | CryptError::BadKey { .. }
        | CryptError::KeyNeeded { .. }
        | CryptError::NotEncrypted { .. }
        | CryptError::WrongKey { .. }
        | CryptError::KeyNotGiven { .. } => Code::Usage,
        CryptError::Cipher { .. } => Code::Incompatible,
        CryptError::Tampered { .. }
        | CryptError::Plaintext { .. }
        | CryptError::Config { .. }
        | CryptError::Random => Code::Storage,
    }
}

impl From<CryptError> for Failure {
    fn from(e: CryptError) -> Self {
        Failure::new(crypt_code(&e), e)
    }
}

impl From<RepoError> for Failure {
    fn from(e: RepoError) -> Self {
        Failure::new(repo_code(&e), e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        RepoError::Store(e).into()
    }
}

fn push_code(e: &PushError) -> Code {
    match e {
        PushError::Read { .. } | PushError::Name(_) => Code::Usage,
        PushError::WrongSize { .. }
        | PushError::BadSegment { .. }
        | PushError::OtherCluster { .. } => Code::Incompatible,
        PushError::Conflict { .. } => Code::Conflict,
        PushError::Unfinished { .. } => Code::Conflict,
        PushError::Compress { .. } => Code::Internal,
        PushError::Repo(r) => repo_code(r),
    }
}

impl From<PushError> for Failure {
    fn from(e: PushError) -> Self {
        Failure::new(push_code(&e), e)
    }
}

impl From<FetchError> for Failure {
    fn from(e: FetchError) -> Self {
        let code = match &e {
            FetchError::NotFound(_) => Code::NotFound,
            FetchError::Name(_) => Code::Usage,
            FetchError::Corrupt { .. } | FetchError::Unservable { .. } => Code::Storage,
            FetchError::Write { .. } => Code::Internal,
            FetchError::Repo(r) => repo_code(r),
        };
        Failure::new(code, e)
    }
}

impl From<BackupError> for Failure {
    fn from(e: BackupError) -> Self {
        Failure::new(backup_code(&e), e)
    }
}

fn backup_code(e: &BackupError) -> Code {
    match e {
        BackupError::OtherCluster { .. }
        | BackupError::OtherMajor { .. }
        | BackupError::StandbyOtherSystem { .. } => Code::Incompatible,
        BackupError::Tablespaces(_)
        | BackupError::StandbyNeedsPrimary
        | BackupError::StandbyIsPrimary { .. }
        | BackupError::StandbyOtherDirectory { .. }
        | BackupError::NoParent { .. }
        | BackupError::UnknownParent(_)
        | BackupError::BadParent { .. } => Code::Usage,
        BackupError::StandbyBehind { .. }
        | BackupError::StandbyRestartpoint { .. }
        | BackupError::TimelineChanged { .. } => Code::Postgres,
        BackupError::Conn(_) | BackupError::Sql { .. } | BackupError::Returned { .. } => {
            Code::Postgres
        }
        BackupError::StopSegmentNotArchived { .. } => Code::Postgres,
        BackupError::Read { .. } | BackupError::Control { .. } | BackupError::PgVersion { .. } => {
            Code::Usage
        }
        BackupError::Copy { .. } => Code::Internal,
        BackupError::NoFreeId(_) => Code::Conflict,
        BackupError::Repo(r) => repo_code(r),
    }
}

impl From<SnapshotError> for Failure {
    fn from(e: SnapshotError) -> Self {
        Failure::new(snapshot_code(&e), e)
    }
}

fn snapshot_code(e: &SnapshotError) -> Code {
    match e {
        SnapshotError::CopyCannotBeAtomic
        | SnapshotError::AtomicNeedsConn
        | SnapshotError::AtomicWalElsewhere { .. }
        | SnapshotError::AtomicTablespaces => Code::Usage,
        SnapshotError::Returned { .. }
        | SnapshotError::TablespacesChanged { .. }
        | SnapshotError::TablespaceMap(_) => Code::Postgres,
        SnapshotError::Backup(b) => backup_code(b),
        SnapshotError::Provider { source, .. } => provider_code(source),
    }
}

/// A provider that cannot be used as told is the operator's to fix; one
/// whose program failed or hung, or whose snapshot is gone, is the
/// snapshot store failing.
fn provider_code(e: &ProviderError) -> Code {
    match e {
        ProviderError::Spawn { .. }
        | ProviderError::NotSubvolume { .. }
        | ProviderError::TablespaceNotSubvolume { .. }
        | ProviderError::TablespaceOtherFilesystem { .. }
        | ProviderError::CommandTablespaces { .. }
        | ProviderError::CoversNotCommand
        | ProviderError::TablespacePath { .. }
        | ProviderError::NotBtrfs { .. }
        | ProviderError::OtherFilesystem { .. }
        | ProviderError::MissingCommand(_)
        | ProviderError::NoHandle
        | ProviderError::Io { .. } => Code::Usage,
        ProviderError::Failed { .. }
        | ProviderError::TimedOut { .. }
        | ProviderError::Gone { .. }
        | ProviderError::NoTablespace { .. } => Code::Storage,
    }
}

impl From<PlanError> for Failure {
    fn from(e: PlanError) -> Self {
        Failure::new(plan_code(&e), e)
    }
}

impl From<TimeError> for Failure {
    fn from(e: TimeError) -> Self {
        let code = match &e {
            TimeError::NoZone(_) | TimeError::Invalid(_) => Code::Usage,
        };
        Failure::new(code, e)
    }
}

fn tablespace_code(e: &crate::recover::tablespaces::TablespaceError) -> Code {
    use crate::recover::tablespaces::TablespaceError;
    match e {
        TablespaceError::NotEmpty { .. }
        | TablespaceError::Unmapped { .. }
        | TablespaceError::Shared { .. }
        | TablespaceError::BadMapping(_)
        | TablespaceError::Create { .. } => Code::Usage,
        TablespaceError::Map(_) => Code::Storage,
    }
}

fn recover_code(e: &RecoverError) -> Code {
    match e {
        // What the machine or the operator must fix: a directory, a
        // port, a program that cannot run; nothing about recovery.
        RecoverError::NotEmpty { .. }
        | RecoverError::PortInUse { .. }
        | RecoverError::NoPort
        | RecoverError::Write { .. }
        | RecoverError::Spawn { .. }
        | RecoverError::Tablespaces(_) => Code::Usage,
        RecoverError::Tablespace(t) => tablespace_code(t),
        RecoverError::Snapshot { source, .. } => provider_code(source),
        RecoverError::Bin(b) => bin_code(b),
        RecoverError::Corrupt { .. }
        | RecoverError::Checksum { .. }
        | RecoverError::BadManifest(_) => Code::Storage,
        RecoverError::Repo(r) => repo_code(r),
        RecoverError::ServerFailed { .. }
        | RecoverError::PastTarget { .. }
        | RecoverError::EndedShort { .. }
        | RecoverError::EndedElsewhere { .. }
        | RecoverError::EndUnknown(_)
        | RecoverError::Stalled { .. }
        | RecoverError::WrongServer { .. }
        | RecoverError::StopFailed { .. } => Code::Recovery,
        RecoverError::NewRepo { source, .. } => new_repo_code(source),
    }
}

fn new_repo_code(e: &NewRepoError) -> Code {
    match e {
        NewRepoError::Identity(b) => backup_code(b),
        NewRepoError::Init(i) => init_code(i),
        // Another run took the repository: a fork's must be its own.
        NewRepoError::Taken => Code::Conflict,
    }
}

impl From<RecoverError> for Failure {
    fn from(e: RecoverError) -> Self {
        Failure::new(recover_code(&e), e)
    }
}

fn bin_code(e: &BinError) -> Code {
    match e {
        BinError::NotInDir { .. } => Code::Incompatible,
    }
}

/// Reading an install's fingerprint failed: the install cannot be used.
fn install_code(e: &InstallError) -> Code {
    match e {
        InstallError::RootNeedsUser { .. }
        | InstallError::Io { .. }
        | InstallError::Spawn { .. }
        | InstallError::Initdb { .. }
        | InstallError::ControlUnreadable { .. }
        | InstallError::ControlUndecodable { .. } => Code::Incompatible,
    }
}

fn select_code(e: &SelectError) -> Code {
    match e {
        SelectError::NotAnInstall(_) => Code::Usage,
        SelectError::Fingerprint(i) => install_code(i),
        SelectError::CannotRun { .. } | SelectError::NoneCompatible { .. } => Code::Incompatible,
    }
}

fn plan_code(e: &PlanError) -> Code {
    match e {
        PlanError::NoBackups
        | PlanError::BeforeEarliest { .. }
        | PlanError::AfterLatest { .. }
        | PlanError::MissingSegment { .. }
        | PlanError::NoHistory(_)
        | PlanError::NoBackupBefore { .. }
        | PlanError::NotFound { .. }
        | PlanError::AfterEnd { .. }
        | PlanError::XidAborted { .. }
        | PlanError::XidEpoch { .. } => Code::Unreachable,
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        Failure::new(run_code(&e), e)
    }
}

fn run_code(e: &RunError) -> Code {
    match e {
        RunError::LatestNeedsPromote
        | RunError::StandbyHasNoTarget
        | RunError::UpgradeNotAnInstall(_)
        | RunError::UpgradeNotNewer { .. } => Code::Usage,
        RunError::Repo(r) => repo_code(r),
        RunError::Plan(p) => plan_code(p),
        RunError::PlannedBackupMissing(_) | RunError::Exe(_) => Code::Internal,
        RunError::Install(s) => select_code(s),
        RunError::Restore { source, .. } | RunError::Upgrade { source, .. } => recover_code(source),
    }
}

impl From<ForkError> for Failure {
    fn from(e: ForkError) -> Self {
        let code = match &e {
            // What the operator must fix: the flags, or the repository
            // named for the fork.
            ForkError::SameRepo { .. }
            | ForkError::Nested { .. }
            | ForkError::NotEmpty { .. }
            | ForkError::NoStart
            | ForkError::NotPromote(_) => Code::Usage,
            ForkError::NewRepo { source, .. } => repo_code(source),
            ForkError::Run(r) => run_code(r),
            ForkError::NoTimeline => Code::Recovery,
            ForkError::FirstBackup { source, .. } => backup_code(source),
            // As a backup whose last segment never arrives.
            ForkError::HistoryNotArchived { .. } => Code::Postgres,
        };
        Failure::new(code, e)
    }
}

impl From<PgdataError> for Failure {
    fn from(e: PgdataError) -> Self {
        let code = match &e {
            // The directory a restore was told to use: the operator's to fix.
            PgdataError::Create { .. } | PgdataError::GiveAway { .. } => Code::Usage,
        };
        Failure::new(code, e)
    }
}

impl From<InitError> for Failure {
    fn from(e: InitError) -> Self {
        Failure::new(init_code(&e), e)
    }
}

fn init_code(e: &InitError) -> Code {
    match e {
        InitError::OtherSystem { .. } => Code::Incompatible,
        InitError::Repo(r) => repo_code(r),
        InitError::Crypt(c) => crypt_code(c),
        InitError::Clear { .. }
        | InitError::KeyWithoutEncrypt { .. }
        | InitError::NoKey
        | InitError::NoCurrentKey => Code::Usage,
        InitError::GiveAway { .. } => Code::Storage,
    }
}

impl From<UserError> for Failure {
    fn from(e: UserError) -> Self {
        let code = match &e {
            UserError::NoSuchUser(_)
            | UserError::Lookup { .. }
            | UserError::Stat { .. }
            | UserError::Switch { .. }
            | UserError::RootOwned { .. } => Code::Usage,
        };
        Failure::new(code, e)
    }
}

/// A server that is not there, or does not answer what pitr asks: a
/// PostgreSQL failure (8), so a script can tell "not running" from "no
/// such repository" (2) and "storage" (6).
fn server_code(e: &ServerError) -> Code {
    match e {
        ServerError::NotRunning { .. }
        | ServerError::NotReady { .. }
        | ServerError::Connect { .. }
        | ServerError::WrongServer { .. }
        | ServerError::Sql { .. } => Code::Postgres,
    }
}

impl From<StatusError> for Failure {
    fn from(e: StatusError) -> Self {
        let code = match &e {
            StatusError::Server(s) => server_code(s),
            StatusError::Repo(r) => repo_code(r),
        };
        Failure::new(code, e)
    }
}

impl From<MaintainError> for Failure {
    fn from(e: MaintainError) -> Self {
        let code = match &e {
            MaintainError::Repo(r) => repo_code(r),
            MaintainError::Plan(p) => plan_code(p),
            MaintainError::Backup(b) => backup_code(b),
            MaintainError::Snapshot(s) => snapshot_code(s),
            MaintainError::NoProvider => Code::Internal,
        };
        Failure::new(code, e)
    }
}

impl From<ExpireRunError> for Failure {
    fn from(e: ExpireRunError) -> Self {
        let code = match &e {
            ExpireRunError::Plan(ExpireError::WindowShorterThanNewest { .. })
            | ExpireRunError::Plan(ExpireError::EmptyWindow) => Code::Usage,
            ExpireRunError::Repo(r) => repo_code(r),
            ExpireRunError::Running { .. } => Code::Conflict,
            ExpireRunError::Needed { .. } => Code::Internal,
        };
        Failure::new(code, e)
    }
}

impl From<CheckError> for Failure {
    fn from(e: CheckError) -> Self {
        let code = match &e {
            CheckError::Server(s) => server_code(s),
            CheckError::Status(StatusError::Server(s)) => server_code(s),
            CheckError::Status(StatusError::Repo(r)) | CheckError::Repo(r) => repo_code(r),
        };
        Failure::new(code, e)
    }
}

impl From<PromoteError> for Failure {
    fn from(e: PromoteError) -> Self {
        let code = match &e {
            PromoteError::Server(s) => server_code(s),
            PromoteError::Repo(r) => repo_code(r),
            PromoteError::OtherSystem { .. } => Code::Incompatible,
            PromoteError::Control { .. }
            | PromoteError::ArchivesElsewhere { .. }
            | PromoteError::StartOptions { .. }
            | PromoteError::Install { .. } => Code::Usage,
            PromoteError::NotPromoted { .. } => Code::Recovery,
            PromoteError::Restart(r) => recover_code(r),
            PromoteError::NoTimeline | PromoteError::ArchivingOff(_) => Code::Postgres,
            PromoteError::History { source, .. } | PromoteError::Segment { source, .. } => {
                push_code(source)
            }
            PromoteError::Exe(_) => Code::Internal,
        };
        Failure::new(code, e)
    }
}

impl From<VerifyError> for Failure {
    fn from(e: VerifyError) -> Self {
        let code = match &e {
            VerifyError::Repo(r) => repo_code(r),
            // The store failed mid-object: nothing was found wrong with it.
            VerifyError::Read { .. } => Code::Storage,
            VerifyError::Task(_) => Code::Internal,
        };
        Failure::new(code, e)
    }
}

impl From<RestoreCheckError> for Failure {
    fn from(e: RestoreCheckError) -> Self {
        let code = match &e {
            RestoreCheckError::Run(r) => run_code(r),
            RestoreCheckError::Scratch { .. } | RestoreCheckError::Spawn { .. } => Code::Usage,
            RestoreCheckError::Connect { .. } => Code::Postgres,
            RestoreCheckError::Interrupted => Code::Internal,
        };
        Failure::new(code, e)
    }
}
