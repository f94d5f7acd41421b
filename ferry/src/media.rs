//! Media types of the manifests Ferry reads: the OCI image-spec ones and Docker's
//! schema 2, which registries still serve for most images. Values are oci-spec's
//! [`MediaType`] (Docker's are its `Other`); the strings are for headers.

pub use oci_spec::image::MediaType;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What a registry is asked to send: every type Ferry can store unchanged.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Whether `media_type` names an index or manifest list.
pub fn is_index(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageIndex => true,
        MediaType::Other(t) => t == DOCKER_LIST,
        _ => false,
    }
}

/// Whether `media_type` names a single-platform image manifest.
pub fn is_manifest(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageManifest => true,
        MediaType::Other(t) => t == DOCKER_MANIFEST,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_oci_types_are_told_apart() {
        assert!(is_index(&MediaType::from(OCI_INDEX)));
        assert!(is_index(&MediaType::from(DOCKER_LIST)));
        assert!(is_manifest(&MediaType::from(OCI_MANIFEST)));
        assert!(is_manifest(&MediaType::from(DOCKER_MANIFEST)));
        assert!(!is_manifest(&MediaType::from(DOCKER_LIST)));
        assert_eq!(MediaType::from(DOCKER_LIST).to_string(), DOCKER_LIST);
    }
}
