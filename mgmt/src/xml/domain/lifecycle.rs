//! `<on_poweroff>`, `<on_reboot>`, `<on_crash>`.

use ironvirt_vmm::LifecycleAction;

use super::DomainError;
use crate::xml::tree::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    pub on_poweroff: LifecycleAction,
    pub on_reboot: LifecycleAction,
    pub on_crash: LifecycleAction,
}

impl Lifecycle {
    pub(super) fn parse(root: &Element) -> Result<Lifecycle, DomainError> {
        Ok(Lifecycle {
            on_poweroff: action(root, "on_poweroff", "poweroff", LifecycleAction::Destroy)?,
            on_reboot: action(root, "on_reboot", "reboot", LifecycleAction::Restart)?,
            on_crash: action(root, "on_crash", "crash", LifecycleAction::Destroy)?,
        })
    }
}

pub fn parse_action(s: &str) -> Option<LifecycleAction> {
    Some(match s {
        "destroy" => LifecycleAction::Destroy,
        "restart" => LifecycleAction::Restart,
        "preserve" => LifecycleAction::Preserve,
        "rename-restart" => LifecycleAction::RenameRestart,
        "coredump-destroy" => LifecycleAction::CoredumpDestroy,
        "coredump-restart" => LifecycleAction::CoredumpRestart,
        _ => return None,
    })
}

fn action(
    root: &Element,
    element: &'static str,
    event: &'static str,
    default: LifecycleAction,
) -> Result<LifecycleAction, DomainError> {
    let Some(text) = root.child_text(element) else {
        return Ok(default);
    };
    let value = text.trim();
    let action = parse_action(value).ok_or_else(|| DomainError::UnknownLifecycleAction {
        event: element,
        value: value.to_string(),
    })?;
    // Dumping core only makes sense after a crash (libvirt's virDomainDefLifecycleActionAllowed).
    let coredump = matches!(
        action,
        LifecycleAction::CoredumpDestroy | LifecycleAction::CoredumpRestart
    );
    if coredump && event != "crash" {
        return Err(DomainError::LifecycleActionNotAllowed {
            event,
            action: action.as_str(),
        });
    }
    Ok(action)
}
