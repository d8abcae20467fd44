//! The clock the controllers and the webhook judge time by.

/// Now, to the second: the API server keeps timestamps to the second, and so must anything
/// compared with what it returns.
pub fn now() -> k8s_openapi::jiff::Timestamp {
    use k8s_openapi::jiff::Timestamp;
    Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid timestamp")
}
