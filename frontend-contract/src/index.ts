// The wallet-bff contract for the apps: typed documents for every operation
// (use them with Apollo Client's useQuery / useMutation / useSubscription),
// their result and variable types, and the error codes of `extensions.code`.
export * from "./gql/index";
export * from "./gql/graphql";
export * from "./error-codes";
