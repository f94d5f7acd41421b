//! `index.json` in the fixed form the store and bundles write: sorted entries
//! named by `org.opencontainers.image.ref.name`, pretty JSON, a trailing newline,
//! so the same images always give the same bytes.

use std::collections::BTreeMap;

use oci_spec::image::{ImageIndex, ImageIndexBuilder, MediaType};

use super::REF_NAME;
use crate::manifest::Descriptor;

/// `index.json` bytes for `manifests`, in a fixed form (pretty JSON, trailing newline).
pub(super) fn index_bytes(manifests: Vec<oci_spec::image::Descriptor>) -> Vec<u8> {
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .expect("all required index fields are set");
    let mut bytes = serde_json::to_vec_pretty(&index).expect("an index serialises");
    bytes.push(b'\n');
    bytes
}

/// The descriptor of image `name` as `index.json` lists it.
pub(super) fn named_descriptor(name: &str, desc: &Descriptor) -> oci_spec::image::Descriptor {
    let mut d = oci_spec::image::Descriptor::new(
        desc.media_type.clone(),
        desc.size,
        oci_spec::image::Digest::from(&desc.digest),
    );
    d.set_annotations(Some([(REF_NAME.to_string(), name.to_string())].into()));
    d
}

/// The `index.json` of a layout holding exactly `images`, sorted by name: what a
/// bundle carries. Same images, same bytes.
pub fn render_index(images: &[(String, Descriptor)]) -> Vec<u8> {
    let sorted: BTreeMap<&str, &Descriptor> = images.iter().map(|(n, d)| (n.as_str(), d)).collect();
    index_bytes(
        sorted
            .into_iter()
            .map(|(n, d)| named_descriptor(n, d))
            .collect(),
    )
}

/// Parses `index.json` bytes into (name, descriptor) pairs.
pub fn parse_index(bytes: &[u8]) -> Result<Vec<(String, Descriptor)>, String> {
    let index = serde_json::from_slice::<ImageIndex>(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for d in index.manifests() {
        let name = d
            .annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .ok_or("an index entry has no ref.name annotation")?;
        out.push((
            name.clone(),
            Descriptor {
                media_type: d.media_type().clone(),
                digest: d.digest().try_into().map_err(|e| format!("{e}"))?,
                size: d.size(),
            },
        ));
    }
    Ok(out)
}

pub(super) fn empty_index() -> ImageIndex {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::new())
        .build()
        .expect("all required index fields are set")
}
