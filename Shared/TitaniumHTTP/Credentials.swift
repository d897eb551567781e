/// A request's credentials as they were checked, kept in its context (``IdentifiedRequestContext``)
/// so that a token is verified once per request: by the trace store's user lookup before the
/// handler runs, or by the handler itself when nothing did.
public enum Credentials: Sendable {
    /// Verified: the claims (TitaniumAuth's `AccessClaims`), with the subject they name.
    case verified(subject: String, claims: any Sendable)
    /// Presented and refused: the answer a handler that requires them gives.
    case rejected(APIError)

    /// The verified subject, if any.
    public var subject: String? {
        if case .verified(let subject, _) = self { return subject }
        return nil
    }
}
