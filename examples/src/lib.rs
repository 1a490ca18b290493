//! Deterministic stand-ins for the services the examples talk to.
//!
//! Real graphs call databases, HTTP APIs and models. The examples call these instead: they
//! answer from small in-memory tables after a short simulated latency, so every example runs
//! offline, in well under a second, and prints the same results each time.

pub mod support {
    //! A billing table, an account directory and an urgency scorer for the support-ticket
    //! examples.

    use std::time::Duration;

    /// One row of the billing table.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Invoice {
        /// Invoice number.
        pub id: &'static str,
        /// The billed customer.
        pub customer: &'static str,
        /// Billing period.
        pub month: &'static str,
        /// Amount in cents.
        pub cents: u64,
    }

    impl Invoice {
        /// The amount as `$49.00`.
        pub fn amount(&self) -> String {
            format!("${}.{:02}", self.cents / 100, self.cents % 100)
        }
    }

    const INVOICES: &[Invoice] = &[
        Invoice { id: "INV-1001", customer: "Dana", month: "2025-02", cents: 4900 },
        Invoice { id: "INV-1002", customer: "Dana", month: "2025-03", cents: 4900 },
        Invoice { id: "INV-1003", customer: "Dana", month: "2025-03", cents: 4900 },
        Invoice { id: "INV-2001", customer: "Lee", month: "2025-03", cents: 1900 },
        Invoice { id: "INV-2002", customer: "Lee", month: "2025-04", cents: 1900 },
        Invoice { id: "INV-3001", customer: "Sam", month: "2025-03", cents: 9900 },
        Invoice { id: "INV-3002", customer: "Sam", month: "2025-04", cents: 9900 },
    ];

    /// The customer's invoices, oldest first (a database query, 30 ms).
    pub async fn invoices(customer: &str) -> Vec<Invoice> {
        tokio::time::sleep(Duration::from_millis(30)).await;
        INVOICES.iter().filter(|invoice| invoice.customer == customer).cloned().collect()
    }

    /// The first invoice that repeats an earlier one's month and amount: a double charge.
    pub fn duplicate_charge(invoices: &[Invoice]) -> Option<&Invoice> {
        invoices.iter().enumerate().find_map(|(index, invoice)| {
            let earlier = &invoices[..index];
            earlier.iter().any(|e| e.month == invoice.month && e.cents == invoice.cents).then_some(invoice)
        })
    }

    /// Whether a customer can sign in.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum AccountStatus {
        /// Everything works.
        Active,
        /// Locked by too many failed sign-ins.
        Locked {
            /// Failed attempts before the lock.
            failed_logins: u32,
        },
    }

    /// One row of the account directory.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Account {
        /// The subscription plan.
        pub plan: &'static str,
        /// Whether the customer can sign in.
        pub status: AccountStatus,
    }

    /// The customer's account, if there is one (an API call, 20 ms).
    pub async fn account(customer: &str) -> Option<Account> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match customer {
            "Dana" => Some(Account { plan: "Pro", status: AccountStatus::Active }),
            "Lee" => Some(Account { plan: "Starter", status: AccountStatus::Active }),
            "Sam" => Some(Account { plan: "Team", status: AccountStatus::Locked { failed_logins: 5 } }),
            _ => None,
        }
    }

    /// Urgency from 0 to 10: exclamation marks, capitals and words that mean "now".
    pub fn urgency(text: &str) -> u8 {
        const HURRY: [&str; 5] = ["urgent", "asap", "immediately", "right now", "within the hour"];
        let lower = text.to_lowercase();
        let hurry = HURRY.iter().filter(|word| lower.contains(*word)).count() * 3;
        let shouting =
            text.split_whitespace().filter(|w| w.len() > 2 && w.chars().all(|c| c.is_ascii_uppercase())).count() * 2;
        let bangs = text.matches('!').count();
        u8::try_from((hurry + shouting + bangs).min(10)).unwrap_or(10)
    }
}
