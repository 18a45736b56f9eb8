//! `DataCaptureConfig` as CreateEndpointConfig takes it and DescribeEndpoint summarises it.

use serde::{Deserialize, Serialize};

use pier_jobs::channels::Location;

/// SageMaker's `DataCaptureConfig` (the SDK's `DataCaptureConfig._to_request_dict()`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DataCaptureConfig {
    /// Whether capture runs (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_capture: Option<bool>,
    /// Percentage of requests captured, 0 to 100.
    pub initial_sampling_percentage: u32,
    /// `s3://bucket/prefix`, `file:///abs/path` or a local path.
    #[serde(rename = "DestinationS3Uri")]
    pub destination_s3_uri: String,
    /// Refused: Pier does not encrypt with KMS keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// `Input`, `Output` or both (`InputAndOutput`).
    pub capture_options: Vec<CaptureOption>,
    /// Which content types are captured as CSV or JSON text; any other is Base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_content_type_header: Option<CaptureContentTypeHeader>,
}

/// One `CaptureOptions` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CaptureOption {
    /// `Input`, `Output` or `InputAndOutput`.
    pub capture_mode: String,
}

/// `CaptureContentTypeHeader`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CaptureContentTypeHeader {
    /// Content types captured as CSV text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_content_types: Option<Vec<String>>,
    /// Content types captured as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_content_types: Option<Vec<String>>,
}

/// DescribeEndpoint's `DataCaptureConfig` (SageMaker's `DataCaptureConfigSummary`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DataCaptureSummary {
    /// As configured.
    pub enable_capture: bool,
    /// `Started` or `Stopped`.
    pub capture_status: String,
    /// The sampling percentage in force.
    pub current_sampling_percentage: u32,
    /// As configured.
    #[serde(rename = "DestinationS3Uri")]
    pub destination_s3_uri: String,
}

impl DataCaptureConfig {
    /// Whether capture is on.
    pub fn enabled(&self) -> bool {
        self.enable_capture.unwrap_or(true)
    }

    /// Which halves are captured: (input, output).
    pub fn modes(&self) -> (bool, bool) {
        let mut modes = (false, false);
        for o in &self.capture_options {
            match o.capture_mode.as_str() {
                "Input" => modes.0 = true,
                "Output" => modes.1 = true,
                _ => modes = (true, true),
            }
        }
        modes
    }

    /// The destination, parsed (checked by [`validate`](Self::validate)).
    pub fn destination(&self) -> Result<Location, String> {
        Location::parse(&self.destination_s3_uri)
            .map_err(|e| format!("DataCaptureConfig.DestinationS3Uri {e}"))
    }

    /// Checks the fields as SageMaker's API does; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.initial_sampling_percentage > 100 {
            return Err(format!(
                "DataCaptureConfig.InitialSamplingPercentage {} is not between 0 and 100",
                self.initial_sampling_percentage
            ));
        }
        if self.destination_s3_uri.len() > 512 {
            return Err("DataCaptureConfig.DestinationS3Uri is longer than 512 characters".into());
        }
        self.destination()?;
        if self.kms_key_id.is_some() {
            return Err(
                "DataCaptureConfig.KmsKeyId is not supported: Pier does not encrypt with KMS keys"
                    .into(),
            );
        }
        if self.capture_options.is_empty() || self.capture_options.len() > 32 {
            return Err("DataCaptureConfig.CaptureOptions must hold 1 to 32 entries".into());
        }
        for o in &self.capture_options {
            if !matches!(
                o.capture_mode.as_str(),
                "Input" | "Output" | "InputAndOutput"
            ) {
                return Err(format!(
                    "1 validation error detected: Value '{}' at 'dataCaptureConfig.captureOptions.member.captureMode' failed to satisfy constraint: Member must satisfy enum value set: [Input, Output, InputAndOutput]",
                    o.capture_mode
                ));
            }
        }
        if let Some(h) = &self.capture_content_type_header {
            for (field, list) in [
                ("CsvContentTypes", &h.csv_content_types),
                ("JsonContentTypes", &h.json_content_types),
            ] {
                let list = list.as_deref().unwrap_or_default();
                if list.len() > 10 || list.iter().any(|t| t.is_empty() || t.len() > 256) {
                    return Err(format!(
                        "DataCaptureConfig.CaptureContentTypeHeader.{field} must hold at most 10 content types of 1 to 256 characters"
                    ));
                }
            }
        }
        Ok(())
    }

    /// What DescribeEndpoint shows.
    pub fn summary(&self) -> DataCaptureSummary {
        DataCaptureSummary {
            enable_capture: self.enabled(),
            capture_status: if self.enabled() { "Started" } else { "Stopped" }.into(),
            current_sampling_percentage: self.initial_sampling_percentage,
            destination_s3_uri: self.destination_s3_uri.clone(),
        }
    }
}
