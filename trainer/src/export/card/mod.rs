//! Cards the Hugging Face Hub reads: the model cards of an adapter and a merged model
//! ([`model`]), the dataset card of `loam data gettext` ([`dataset`]), and what they are
//! made from: a model directory's [`identity`] (its Hub id, name, licence) and README
//! [`front_matter`].

pub mod dataset;
pub mod front_matter;
pub mod identity;
pub mod model;
