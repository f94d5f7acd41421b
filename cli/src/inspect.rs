//! `inspect`: what a bundle holds, from its head alone, as text for people and as
//! JSON for scripts. Both binaries run this one implementation.

use std::io::Write as _;
use std::path::PathBuf;

use ferry::archive::Head;
use ferry::signing::PublicKey;
use serde::Serialize;

use crate::exit::Refused;
use crate::progress::human_bytes;

/// The arguments of `inspect`, the same in both binaries.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The bundle (or its first part).
    pub bundle: PathBuf,
    /// Check the manifest's signature with this public key (the contents are not
    /// read: `verify` checks every byte).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints the summary of `args.bundle`; a bundle that cannot be read as one, or
/// whose signature does not match `--key`, is refused (exit 3).
pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let key = args.key.as_deref().map(PublicKey::load).transpose()?;
    let (head, size) = ferry::archive::read_head_of(&args.bundle, key.as_ref())
        .map_err(|e| Refused::classify(&args.bundle, e))?;
    let summary = Summary::new(&head, size);
    if args.json {
        crate::out!("{}", summary.to_json());
    } else {
        let _ = write!(std::io::stdout(), "{}", summary.to_text());
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub id: String,
    pub platforms: Vec<String>,
    pub signer_key_id: &'a str,
    /// Whether the manifest's signature was checked against a public key (`--key`);
    /// the entries are not read.
    pub signature_verified: bool,
    /// A delta's base as one line: `NAME VERSION (ID)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The same, field by field, for scripts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_release: Option<BaseSummary<'a>>,
    pub images: Vec<ImageSummary<'a>>,
    pub files: Vec<FileSummary<'a>>,
    pub charts: Vec<ChartSummary>,
    pub entries: usize,
    /// Uncompressed bytes of the entries.
    pub total_size: u64,
    /// Bytes the file(s) take.
    pub file_size: u64,
    /// What sharing blobs saves across the release (a delta's base included).
    pub dedup_savings: u64,
    /// A delta's bytes that come from its base (not carried).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_base: Option<u64>,
}

/// The release a delta bundle unpacks onto.
#[derive(Debug, Serialize)]
pub struct BaseSummary<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// The base bundle's id (the digest of its signed manifest).
    pub id: String,
}

#[derive(Debug, Serialize)]
pub struct ImageSummary<'a> {
    pub name: &'a str,
    pub digest: String,
    pub platforms: Vec<String>,
    pub size: u64,
}

#[derive(Debug, Serialize)]
pub struct FileSummary<'a> {
    /// The name nodes and scripts use: `files/<name>:<version>`.
    pub reference: String,
    pub file_name: &'a str,
    /// Empty for a platform-independent file.
    pub platforms: Vec<String>,
    pub size: u64,
}

#[derive(Debug, Serialize)]
pub struct ChartSummary {
    /// `charts/<name>:<version>`: `helm pull oci://SITE/charts/<name> --version <version>`.
    pub reference: String,
    pub size: u64,
}

impl<'a> Summary<'a> {
    pub fn new(head: &'a Head, file_size: u64) -> Summary<'a> {
        let m = &head.manifest;
        Summary {
            name: &m.name,
            version: &m.version,
            id: head.id.to_string(),
            platforms: m.platforms.iter().map(|p| p.to_string()).collect(),
            signer_key_id: &head.key_id,
            signature_verified: head.verified,
            base: m
                .base
                .as_ref()
                .map(|b| format!("{} {} ({})", b.name, b.version, b.manifest)),
            base_release: m.base.as_ref().map(|b| BaseSummary {
                name: &b.name,
                version: &b.version,
                id: b.manifest.to_string(),
            }),
            images: m
                .images
                .iter()
                .map(|i| ImageSummary {
                    name: &i.name,
                    digest: i.digest.to_string(),
                    platforms: i.platforms.iter().map(|p| p.to_string()).collect(),
                    size: i.size,
                })
                .collect(),
            files: m
                .files
                .iter()
                .map(|f| FileSummary {
                    reference: ferry::artifact::file_ref_name(&f.name, &f.version),
                    file_name: &f.file_name,
                    platforms: f.platforms.iter().map(|p| p.to_string()).collect(),
                    size: f.size,
                })
                .collect(),
            charts: m
                .charts
                .iter()
                .map(|c| ChartSummary {
                    reference: ferry::artifact::chart_ref_name(&c.name, &c.version),
                    size: c.size,
                })
                .collect(),
            entries: m.entries.len(),
            total_size: m.content_size(),
            file_size,
            dedup_savings: m.dedup_savings(),
            from_base: m
                .base
                .as_ref()
                .map(|_| m.external.iter().map(|e| e.size).sum()),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a summary serialises")
    }

    pub fn to_text(&self) -> String {
        let mut out = format!(
            "bundle     {} {}\nid         {}\nplatforms  {}\nsigned by  {} ({})\n",
            self.name,
            self.version,
            self.id,
            self.platforms.join(", "),
            self.signer_key_id,
            // inspect reads the head alone: what it checks is the manifest's
            // signature, not the bytes after it (regression: "verified" on a
            // truncated bundle).
            if self.signature_verified {
                "manifest signature verified; `verify` checks every byte"
            } else {
                "not verified: pass --key to check"
            }
        );
        if let Some(b) = &self.base {
            out.push_str(&format!("delta on   {b}\n"));
        }
        out.push_str(&format!("images     {}\n", self.images.len()));
        for i in &self.images {
            out.push_str(&format!(
                "  {}\n    {}  {}  {}\n",
                i.name,
                i.digest,
                i.platforms.join(","),
                human_bytes(i.size)
            ));
        }
        if !self.files.is_empty() {
            out.push_str(&format!("files      {}\n", self.files.len()));
            for f in &self.files {
                let platforms = if f.platforms.is_empty() {
                    "any platform".to_string()
                } else {
                    f.platforms.join(",")
                };
                out.push_str(&format!(
                    "  {}\n    {}  {}  {}\n",
                    f.reference,
                    f.file_name,
                    platforms,
                    human_bytes(f.size)
                ));
            }
        }
        if !self.charts.is_empty() {
            out.push_str(&format!("charts     {}\n", self.charts.len()));
            for c in &self.charts {
                out.push_str(&format!("  {}  {}\n", c.reference, human_bytes(c.size)));
            }
        }
        out.push_str(&format!(
            "content    {} in {} entries ({} in the file)\n",
            human_bytes(self.total_size),
            self.entries,
            human_bytes(self.file_size),
        ));
        if let Some(from_base) = self.from_base {
            out.push_str(&format!(
                "from base  {} the site's store holds already\n",
                human_bytes(from_base)
            ));
        }
        out.push_str(&format!(
            "dedup      {} saved by storing shared blobs once{}\n",
            human_bytes(self.dedup_savings),
            if self.from_base.is_some() {
                " (across the release, its base included)"
            } else {
                ""
            }
        ));
        out
    }
}
