/// The version of syncd and syncctl, printed by `--version` on both: one constant, in one place.
public enum SyncdVersion {
    public static let current = "0.12.0"
}
