const _: () = {
    #[automatically_derived]
    impl ::event_runtime::__private::Event for TaskEvent {
        const TYPES: &'static [&'static str] = &[
            "task.created",
            "task.completed",
            "task.reassigned",
        ];
        const VERSION: &'static str = "1.0";
        const TAG: ::core::option::Option<&'static str> = ::core::option::Option::Some(
            "event_type",
        );
        const FIELDS: &'static [&'static str] = &["event_type", "event_id", "task_id"];
        fn event_type(&self) -> &'static str {
            match self {
                Self::Created { .. } => "task.created",
                Self::Completed { .. } => "task.completed",
                Self::Reassigned { .. } => "task.reassigned",
            }
        }
        fn partition_key(&self) -> ::core::option::Option<::std::string::String> {
            match self {
                Self::Created { user_id, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(user_id),
                    )
                }
                Self::Completed { user_id, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(user_id),
                    )
                }
                Self::Reassigned { new_owner, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(new_owner),
                    )
                }
            }
        }
        fn event_id(&self) -> ::core::option::Option<::std::string::String> {
            match self {
                Self::Created { event_id, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(event_id),
                    )
                }
                Self::Completed { event_id, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(event_id),
                    )
                }
                Self::Reassigned { event_id, .. } => {
                    ::core::option::Option::Some(
                        ::std::string::ToString::to_string(event_id),
                    )
                }
            }
        }
    }
};
